"""Sample events, one per event type and version, for the golden files.

``python -m hotdesk_contracts.golden DIR`` writes any golden file that does not exist
yet; it never rewrites one (a golden file is decoded by the tests forever).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from .codec import encode_event
from .events import (
    Cause,
    LedgerEvent,
    LoggedIn,
    LoggedOut,
    LogoutReason,
    PinLockedOut,
    PinLockoutCleared,
    PinRejected,
    Roamed,
)

_AT = datetime(2026, 11, 25, 9, 30, 0, tzinfo=UTC)
_CALL = Cause(actor="user:100", call_id="a84b4c76e66710@hd0001.example")


def samples() -> list[LedgerEvent]:
    """One event of every type at its current version."""
    return [
        LoggedIn(
            event_id="e-1", at=_AT, cause=_CALL, correlation_id="c-1", desk="HD0001", user="100"
        ),
        LoggedOut(
            event_id="e-2",
            at=_AT,
            cause=Cause(actor="admin:alice"),
            correlation_id="c-2",
            desk="HD0001",
            user="100",
            reason=LogoutReason.ADMIN,
        ),
        Roamed(
            event_id="e-3",
            at=_AT,
            cause=Cause(actor="user:101", call_id="b2@hd0001"),
            correlation_id="c-3",
            desk="HD0001",
            from_user="100",
            user="101",
        ),
        PinRejected(
            event_id="e-4",
            at=_AT,
            cause=_CALL,
            correlation_id="c-4",
            user="100",
            desk="HD0002",
            failures=2,
        ),
        PinLockedOut(
            event_id="e-5",
            at=_AT,
            cause=_CALL,
            correlation_id="c-5",
            user="100",
            desk="HD0002",
            until=datetime(2026, 11, 25, 9, 45, 0, tzinfo=UTC),
        ),
        PinLockoutCleared(
            event_id="e-6",
            at=_AT,
            cause=Cause(actor="admin:alice"),
            correlation_id="c-6",
            user="100",
        ),
    ]


def golden_name(event: LedgerEvent) -> str:
    return f"{type(event).__name__}.v{event.version}.json"


def write_missing(directory: Path) -> list[Path]:
    written = []
    for event in samples():
        path = directory / golden_name(event)
        if not path.exists():
            path.write_bytes(encode_event(event) + b"\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for p in write_missing(Path(sys.argv[1] if len(sys.argv) > 1 else "contracts/golden")):
        print(f"wrote {p}")
