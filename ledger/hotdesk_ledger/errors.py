"""Typed refusals of the ledger.

Every refusal is a :class:`DomainError` with a stable machine ``code`` that callers map
to a prompt (the IVR), an HTTP problem (the admin API) or a CLI message. Codes never
change once published; messages are for humans and logs and never carry a PIN.
"""

from __future__ import annotations

from datetime import datetime


class DomainError(Exception):
    """A command the ledger refused. ``code`` is stable and machine-readable."""

    code: str = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DeskChanged(DomainError):
    """The desk is not in the state the caller saw: someone else got there first."""

    code = "desk_changed"

    def __init__(self, desk: str, expected_user: str | None, actual_user: str | None) -> None:
        super().__init__(
            f"desk {desk} is held by {actual_user or 'nobody'}, "
            f"not {expected_user or 'nobody'} as the command expected"
        )
        self.desk = desk
        self.expected_user = expected_user
        self.actual_user = actual_user


class DeskIdle(DomainError):
    """A logout of a desk nobody sits at."""

    code = "desk_idle"

    def __init__(self, desk: str) -> None:
        super().__init__(f"desk {desk} is idle: nobody to log out")
        self.desk = desk


class UserLockedOut(DomainError):
    """Too many wrong PINs: the user may not log in (or try PINs) until ``until``."""

    code = "locked_out"

    def __init__(self, user: str, until: datetime) -> None:
        super().__init__(f"user {user} is locked out until {until.isoformat()}")
        self.user = user
        self.until = until


class NotLockedOut(DomainError):
    """An admin asked to clear a lockout that is not in force."""

    code = "not_locked_out"

    def __init__(self, user: str) -> None:
        super().__init__(f"user {user} is not locked out")
        self.user = user


class DeskStateUnknown(DomainError):
    """The desk's last ledger event cannot be read by this build (e.g. a newer version
    wrote it during a rolling upgrade), so nobody can say who sits there."""

    code = "desk_state_unknown"

    def __init__(self, desk: str) -> None:
        super().__init__(
            f"desk {desk}'s last ledger event cannot be read by this version: "
            "its state is unknown until every service is upgraded"
        )
        self.desk = desk


class SeatedElsewhere(DomainError):
    """A login with ``move=False`` while the user sits at another desk."""

    code = "seated_elsewhere"

    def __init__(self, user: str, desk: str) -> None:
        super().__init__(f"user {user} already sits at desk {desk}")
        self.user = user
        self.desk = desk


class WrongAggregate(DomainError):
    """A command was given to the state of another desk or user (a caller bug)."""

    code = "wrong_aggregate"


class ConcurrencyConflict(DomainError):
    """The aggregate changed under us more often than we were willing to retry.

    Raised by the event store when JetStream answers error 10071 (wrong last subject
    sequence), and by the command handler when its bounded retries are used up.
    """

    code = "conflict"

    def __init__(self, subject: str, expected_seq: int | None, detail: str = "") -> None:
        super().__init__(
            f"concurrent append to {subject}: expected last sequence {expected_seq}"
            + (f" ({detail})" if detail else "")
        )
        self.subject = subject
        self.expected_seq = expected_seq
