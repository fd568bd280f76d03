"""Users: extension -> the desk they sit at (or none) and their PIN lockout."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.events import (
    LedgerEvent,
    LoggedIn,
    LoggedOut,
    PinLockedOut,
    PinLockoutCleared,
    PinRejected,
    Roamed,
)


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One user in the read model."""

    user: str
    desk: str | None = None
    since: datetime | None = None
    locked_until: datetime | None = None
    """A lockout in force until then; check it against the current time."""
    failures: int = 0
    """Wrong PINs inside the current window (as the last ``PinRejected`` counted)."""

    def locked(self, now: datetime) -> bool:
        """Whether the lockout is still in force at ``now``."""
        return self.locked_until is not None and self.locked_until > now


class UserDirectory:
    """Ledger projection ``presence-users``: extension -> :class:`UserRecord`."""

    value_type = UserRecord

    def __init__(self, name: str = "presence-users", bucket: str = streams.USERS.bucket) -> None:
        self.name = name
        self.bucket = bucket
        self.filter_subjects: Sequence[str] = [subjects.LEDGER_ALL]

    def keys(self, event: LedgerEvent) -> Sequence[str]:
        """Every user the event seats or unseats, or whose PIN state it changes."""
        if isinstance(event, Roamed):
            return [event.from_user, event.user]
        return [event.user]

    def apply(
        self, key: str, current: UserRecord | None, event: LedgerEvent, seq: int
    ) -> UserRecord | None:
        """Bind, unbind, count PIN failures, lock and unlock."""
        cur = current or UserRecord(user=key)
        replace = msgspec.structs.replace
        if isinstance(event, LoggedIn) or (isinstance(event, Roamed) and event.user == key):
            return replace(cur, desk=event.desk, since=event.at)
        if isinstance(event, LoggedOut | Roamed):
            # Only the seat the event names is left: with the exclusive policy a newer
            # seat elsewhere may already be recorded for this user.
            if cur.desk == event.desk:
                return replace(cur, desk=None, since=event.at)
            return cur
        if isinstance(event, PinRejected):
            return replace(cur, failures=event.failures)
        if isinstance(event, PinLockedOut):
            return replace(cur, locked_until=event.until)
        if isinstance(event, PinLockoutCleared):
            return replace(cur, locked_until=None, failures=0)
        return cur
