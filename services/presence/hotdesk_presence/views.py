"""What the admin API and console show: desks and users joined with the directory. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from hotdesk_contracts.directory import Directory

from .projections import DeskSeat, DeskStatus, UserRecord


class DeskView(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the hot-desking tab."""

    desk: str
    mac: str
    vendor: str
    model: str
    state: str
    """``idle`` or ``logged_in``."""
    user: str | None
    name: str | None
    """The user's display name from the directory."""
    since: datetime | None
    online: bool
    user_agent: str
    reprovision: str
    """``confirmed``, ``failed`` or empty."""
    last_reason: str
    last_actor: str


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    """One user: where they sit and whether their PIN is locked."""

    user: str
    name: str
    desk: str | None
    since: datetime | None
    locked: bool
    locked_until: datetime | None
    failures: int


def desk_views(
    directory: Directory,
    seats: Mapping[str, DeskSeat],
    statuses: Mapping[str, DeskStatus],
) -> list[DeskView]:
    """Every desk of the directory, in directory order, with its seat and phone status."""
    return [
        d for d in (desk_view(directory, n.name, seats, statuses) for n in directory.desks) if d
    ]


def desk_view(
    directory: Directory,
    desk: str,
    seats: Mapping[str, DeskSeat],
    statuses: Mapping[str, DeskStatus],
) -> DeskView | None:
    """One desk's row, or ``None`` when the directory has no such desk."""
    conf = directory.desk(desk)
    if conf is None:
        return None
    seat = seats.get(desk) or DeskSeat(desk=desk)
    status = statuses.get(desk) or DeskStatus(desk=desk)
    ext = directory.extension(seat.user) if seat.user else None
    return DeskView(
        desk=desk,
        mac=conf.mac.lower(),
        vendor=conf.vendor,
        model=conf.model,
        state=seat.state,
        user=seat.user,
        name=ext.name if ext else None,
        since=seat.since,
        online=status.online,
        user_agent=status.user_agent,
        reprovision=status.reprovision,
        last_reason=seat.last_reason,
        last_actor=seat.last_actor,
    )


def filter_desks(
    views: list[DeskView],
    *,
    state: str | None = None,
    online: bool | None = None,
    user: str | None = None,
) -> list[DeskView]:
    """Desks matching every filter given."""
    return [
        v
        for v in views
        if (state is None or v.state == state)
        and (online is None or v.online == online)
        and (user is None or v.user == user)
    ]


def user_views(
    directory: Directory, records: Mapping[str, UserRecord], now: datetime
) -> list[UserView]:
    """Every extension of the directory with its desk and lockout at ``now``."""
    out = []
    for ext in directory.extensions:
        rec = records.get(ext.number) or UserRecord(user=ext.number)
        locked = rec.locked(now)
        out.append(
            UserView(
                user=ext.number,
                name=ext.name,
                desk=rec.desk,
                since=rec.since,
                locked=locked,
                locked_until=rec.locked_until if locked else None,
                failures=rec.failures,
            )
        )
    return out
