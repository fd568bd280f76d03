"""Small builders for ledger commands in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hotdesk_contracts.commands import ClearPinLockout, LogIn, LogOut, RecordPinFailure
from hotdesk_contracts.events import Cause, LogoutReason

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _common(now: datetime, command_id: str | None) -> dict[str, object]:
    cid = command_id or uuid.uuid4().hex
    return {
        "command_id": cid,
        "at": now,
        "cause": Cause(actor="user:test", call_id=f"call-{cid}"),
        "correlation_id": f"corr-{cid}",
    }


def log_in(
    desk: str,
    user: str,
    seen_user: str | None = None,
    *,
    now: datetime = T0,
    move: bool = True,
    command_id: str | None = None,
) -> LogIn:
    return LogIn(desk=desk, user=user, seen_user=seen_user, move=move, **_common(now, command_id))  # type: ignore[arg-type]


def log_out(
    desk: str,
    user: str | None = None,
    *,
    now: datetime = T0,
    reason: LogoutReason = LogoutReason.USER_CODE,
    command_id: str | None = None,
) -> LogOut:
    return LogOut(desk=desk, user=user, reason=reason, **_common(now, command_id))  # type: ignore[arg-type]


def pin_failure(
    user: str, desk: str = "HD0001", *, now: datetime = T0, command_id: str | None = None
) -> RecordPinFailure:
    return RecordPinFailure(user=user, desk=desk, **_common(now, command_id))  # type: ignore[arg-type]


def clear_lockout(
    user: str, *, now: datetime = T0, command_id: str | None = None
) -> ClearPinLockout:
    return ClearPinLockout(user=user, **_common(now, command_id))  # type: ignore[arg-type]
