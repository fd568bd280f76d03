"""Ledger events: the facts of hot desking, past tense, never rewritten.

Every event is a frozen, tagged msgspec Struct. The ``type`` tag names the event and
``version`` is its schema version: a change within a version may only add optional
fields; a breaking change is a new version plus an upcaster in :mod:`.upcasting`.
Each version has a golden JSON file under ``contracts/golden/`` that the tests decode
forever.

Desk-scoped events (``LoggedIn``, ``LoggedOut``, ``Roamed``) are appended to the desk's
subject, user-scoped events (the PIN events) to the user's subject; see
:mod:`.subjects`.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec


class LogoutReason(enum.StrEnum):
    """Why a user left a desk."""

    USER_KEY = "user_key"
    """The user pressed the reserved logout key on the phone."""
    USER_CODE = "user_code"
    """The user dialled the logout code (``*77*5*``)."""
    ADMIN = "admin"
    """An admin logged the user out remotely."""
    ELSEWHERE = "elsewhere"
    """The user logged in at another desk (exclusive policy)."""
    AUTO_IDLE = "auto_idle"
    """No calls for the configured idle time."""
    AUTO_MAX_DURATION = "auto_max_duration"
    """The login lasted longer than the configured maximum."""
    AUTO_SCHEDULE = "auto_schedule"
    """The daily logout time was reached."""
    DESK_REMOVED = "desk_removed"
    """The desk was removed from the directory."""


class Cause(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What made an event happen: a call, an admin, or the system itself.

    ``call_id`` is the SIP Call-ID of the IVR call that caused it; ``actor`` names who
    acted (``user:100``, ``admin:alice``, ``system:auto-logout``, ``system:directory``).
    """

    actor: str
    call_id: str | None = None


class _LedgerEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every ledger event carries."""

    event_id: str
    """Unique id of this event (also the ``Nats-Msg-Id`` it was appended with)."""
    at: datetime
    """When it happened, UTC."""
    cause: Cause
    correlation_id: str
    """Ties together everything one action caused (one IVR call, one admin click)."""


class LoggedIn(_LedgerEvent, frozen=True, tag="LoggedIn"):
    """A user logged in at an idle desk. Appended to the desk's subject."""

    desk: str
    user: str
    version: int = 1


class LoggedOut(_LedgerEvent, frozen=True, tag="LoggedOut"):
    """A user left a desk, which is idle again. Appended to the desk's subject."""

    desk: str
    user: str
    reason: LogoutReason
    version: int = 1


class Roamed(_LedgerEvent, frozen=True, tag="Roamed"):
    """A desk changed hands without an idle moment: ``from_user`` left, ``user`` sits.

    Logging in on a desk that has another user roams it (as in the product note).
    Appended to the desk's subject.
    """

    desk: str
    from_user: str
    user: str
    version: int = 1


class PinRejected(_LedgerEvent, frozen=True, tag="PinRejected"):
    """A wrong PIN was entered for a user. Appended to the user's subject.

    ``failures`` counts the rejections inside the current lockout window, this one
    included. The PIN itself is never recorded.
    """

    user: str
    desk: str
    failures: int
    version: int = 1


class PinLockedOut(_LedgerEvent, frozen=True, tag="PinLockedOut"):
    """Too many wrong PINs: logins for the user are refused until ``until``.

    Appended to the user's subject.
    """

    user: str
    desk: str
    until: datetime
    version: int = 1


class PinLockoutCleared(_LedgerEvent, frozen=True, tag="PinLockoutCleared"):
    """An admin lifted a user's PIN lockout. Appended to the user's subject.

    A lockout that simply expires needs no event: its ``until`` has passed. ``desk`` is
    empty: the action is not tied to a desk.
    """

    user: str
    desk: str = ""
    version: int = 1


LedgerEvent = LoggedIn | LoggedOut | Roamed | PinRejected | PinLockedOut | PinLockoutCleared
"""Every ledger event, as a tagged union msgspec can decode directly."""

DESK_EVENTS: tuple[type[_LedgerEvent], ...] = (LoggedIn, LoggedOut, Roamed)
USER_EVENTS: tuple[type[_LedgerEvent], ...] = (PinRejected, PinLockedOut, PinLockoutCleared)
ALL_EVENTS: tuple[type[_LedgerEvent], ...] = DESK_EVENTS + USER_EVENTS
