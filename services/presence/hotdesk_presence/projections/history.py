"""History: every ledger event per desk and per user, newest last, capped per key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.events import LedgerEvent, LoggedOut, PinLockedOut, Roamed

DEFAULT_CAP = 100


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One ledger event as the history shows it."""

    seq: int
    at: datetime
    type: str
    desk: str
    user: str
    actor: str
    """Who caused it (``user:100``, ``admin:alice``, ``system:auto-logout``)."""
    reason: str = ""
    from_user: str = ""
    until: datetime | None = None
    call_id: str = ""


class HistoryLog(msgspec.Struct, frozen=True, kw_only=True):
    """The most recent entries of one desk or user, oldest first."""

    entries: list[HistoryEntry] = []


def desk_key(desk: str) -> str:
    """History key of a desk."""
    return f"desk.{subjects.token(desk)}"


def user_key(user: str) -> str:
    """History key of a user."""
    return f"user.{subjects.token(user)}"


def entry_of(event: LedgerEvent, seq: int) -> HistoryEntry:
    """The history entry for one ledger event."""
    return HistoryEntry(
        seq=seq,
        at=event.at,
        type=type(event).__name__,
        desk=event.desk,
        user=event.user,
        actor=event.cause.actor,
        reason=str(event.reason) if isinstance(event, LoggedOut) else "",
        from_user=event.from_user if isinstance(event, Roamed) else "",
        until=event.until if isinstance(event, PinLockedOut) else None,
        call_id=event.cause.call_id or "",
    )


class History:
    """Ledger projection ``presence-history``: ``desk.<desk>`` / ``user.<ext>`` -> log."""

    value_type = HistoryLog

    def __init__(
        self,
        name: str = "presence-history",
        bucket: str = streams.HISTORY.bucket,
        cap: int = DEFAULT_CAP,
    ) -> None:
        self.name = name
        self.bucket = bucket
        self.cap = cap
        self.filter_subjects: Sequence[str] = [subjects.LEDGER_ALL]

    def keys(self, event: LedgerEvent) -> Sequence[str]:
        """The desk (if any) and every user the event involves."""
        keys = [desk_key(event.desk)] if event.desk else []
        keys.append(user_key(event.user))
        if isinstance(event, Roamed):
            keys.append(user_key(event.from_user))
        return keys

    def apply(
        self, key: str, current: HistoryLog | None, event: LedgerEvent, seq: int
    ) -> HistoryLog | None:
        """Append the entry, dropping the oldest beyond the cap."""
        entries = list(current.entries) if current is not None else []
        entries.append(entry_of(event, seq))
        return HistoryLog(entries=entries[-self.cap :])
