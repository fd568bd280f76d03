"""Desks: who sits at each desk, since when, and what last happened there.

Two folds feed the desks read model. :class:`DeskSeats` is a ledger projection (run by
``hotdesk_ledger.projection.ProjectionRunner``); :class:`DeskStatusFold` folds the
edge's registrations and the provisioner's reprovision outcomes (run by
:class:`~hotdesk_presence.projections.bus.BusProjectionRunner`). The API joins both
with the directory (MAC, vendor, model) in :func:`hotdesk_presence.views.desk_view`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.events import LedgerEvent, LoggedIn, LoggedOut, Roamed
from hotdesk_contracts.messages import (
    RegistrationChanged,
    ReprovisionConfirmed,
    ReprovisionFailed,
)

DESK_STATUS_BUCKET = streams.DESK_STATUS.bucket
"""KV bucket of :class:`DeskStatus` values (registrations and reprovisioning)."""


class DeskSeat(msgspec.Struct, frozen=True, kw_only=True):
    """A desk's seat: ``user`` is ``None`` while the desk is idle."""

    desk: str
    user: str | None = None
    since: datetime | None = None
    """When the current state began (login, roam or logout time)."""
    last_reason: str = ""
    """The reason of the last logout (``admin``, ``auto_idle``, ...), empty otherwise."""
    last_actor: str = ""
    """Who caused the last seating event (``user:100``, ``admin:alice``, ...)."""

    @property
    def state(self) -> str:
        """``logged_in`` or ``idle``."""
        return "logged_in" if self.user else "idle"


class DeskSeats:
    """Ledger projection ``presence-desks``: desk name -> :class:`DeskSeat`."""

    value_type = DeskSeat

    def __init__(self, name: str = "presence-desks", bucket: str = streams.DESKS.bucket) -> None:
        self.name = name
        self.bucket = bucket
        self.filter_subjects: Sequence[str] = [subjects.LEDGER_DESKS]

    def keys(self, event: LedgerEvent) -> Sequence[str]:
        """The desk a seating event happened at."""
        if isinstance(event, (LoggedIn, LoggedOut, Roamed)):
            return [event.desk]
        return []

    def apply(
        self, key: str, current: DeskSeat | None, event: LedgerEvent, seq: int
    ) -> DeskSeat | None:
        """Seat or free the desk."""
        if isinstance(event, (LoggedIn, Roamed)):
            return DeskSeat(desk=key, user=event.user, since=event.at, last_actor=event.cause.actor)
        if isinstance(event, LoggedOut):
            return DeskSeat(
                desk=key,
                since=event.at,
                last_reason=str(event.reason),
                last_actor=event.cause.actor,
            )
        return current


class DeskStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the bus says about a desk's phone."""

    desk: str
    online: bool = False
    """At least one live registration contact."""
    online_since: datetime | None = None
    user_agent: str = ""
    reprovision: str = ""
    """``confirmed``, ``failed`` or empty when never reprovisioned."""
    reprovision_at: datetime | None = None
    reprovision_stage: str = ""
    """For ``failed``: the stage it got stuck at (``notify``, ``fetch``, ``register``)."""


BusEvent = RegistrationChanged | ReprovisionConfirmed | ReprovisionFailed
"""The bus events :class:`DeskStatusFold` reads (a tagged union msgspec decodes)."""


class DeskStatusFold:
    """Bus projection ``presence-desk-status``: desk name -> :class:`DeskStatus`."""

    value_type = DeskStatus
    event_type = BusEvent

    def __init__(
        self,
        name: str = "presence-desk-status",
        bucket: str = DESK_STATUS_BUCKET,
    ) -> None:
        self.name = name
        self.bucket = bucket
        self.sources: Sequence[tuple[str, str]] = [
            (streams.EDGE.name, subjects.EDGE_REGISTRATION_ALL),
            (streams.PROVISIONING.name, subjects.PROVISIONING_ALL),
        ]

    def keys(self, event: BusEvent, subject: str) -> Sequence[str]:
        """The desk the event is about; registrations of user AORs are not desks."""
        if isinstance(event, RegistrationChanged):
            return [event.aor] if event.aor.startswith("HD") else []
        return [event.desk]

    def apply(
        self, key: str, current: DeskStatus | None, event: BusEvent, seq: int
    ) -> DeskStatus | None:
        """Track the registration state and the last reprovision outcome.

        A desk is online while it has a live contact: the event lists the contacts left
        after the change, whatever its kind (an ``expired`` or ``unregistered`` of one
        contact leaves the desk online through another)."""
        cur = current or DeskStatus(desk=key)
        if isinstance(event, RegistrationChanged):
            online = bool(event.contacts)
            since = cur.online_since if (cur.online and online) else (event.at if online else None)
            return msgspec.structs.replace(
                cur,
                online=online,
                online_since=since,
                user_agent=event.user_agent or cur.user_agent,
            )
        if isinstance(event, ReprovisionConfirmed):
            return msgspec.structs.replace(
                cur, reprovision="confirmed", reprovision_at=event.at, reprovision_stage=""
            )
        return msgspec.structs.replace(
            cur, reprovision="failed", reprovision_at=event.at, reprovision_stage=event.stage
        )
