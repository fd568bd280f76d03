"""Builders for ledger and bus events in presence tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TypedDict

from hotdesk_contracts.events import (
    Cause,
    LoggedIn,
    LoggedOut,
    LogoutReason,
    PinLockedOut,
    PinLockoutCleared,
    PinRejected,
    Roamed,
)
from hotdesk_contracts.messages import (
    CallPhase,
    CallStateChanged,
    RegistrationChanged,
    ReprovisionConfirmed,
    ReprovisionFailed,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class _Common(TypedDict):
    event_id: str
    at: datetime
    cause: Cause
    correlation_id: str


def _common(now: datetime, actor: str) -> _Common:
    eid = uuid.uuid4().hex
    return {
        "event_id": eid,
        "at": now,
        "cause": Cause(actor=actor, call_id=f"call-{eid}"),
        "correlation_id": eid,
    }


def logged_in(desk: str, user: str, minutes: float = 0, actor: str = "") -> LoggedIn:
    return LoggedIn(desk=desk, user=user, **_common(at(minutes), actor or f"user:{user}"))


def logged_out(
    desk: str,
    user: str,
    minutes: float = 0,
    reason: LogoutReason = LogoutReason.USER_CODE,
    actor: str = "",
) -> LoggedOut:
    return LoggedOut(
        desk=desk, user=user, reason=reason, **_common(at(minutes), actor or f"user:{user}")
    )


def roamed(desk: str, from_user: str, user: str, minutes: float = 0) -> Roamed:
    return Roamed(desk=desk, from_user=from_user, user=user, **_common(at(minutes), f"user:{user}"))


def pin_rejected(user: str, failures: int, minutes: float = 0) -> PinRejected:
    return PinRejected(
        user=user, desk="HD0001", failures=failures, **_common(at(minutes), "user:x")
    )


def locked_out(user: str, until_minutes: float, minutes: float = 0) -> PinLockedOut:
    return PinLockedOut(
        user=user, desk="HD0001", until=at(until_minutes), **_common(at(minutes), "system:pin")
    )


def lockout_cleared(user: str, minutes: float = 0) -> PinLockoutCleared:
    return PinLockoutCleared(user=user, **_common(at(minutes), "admin:alice"))


def call_state(
    call_id: str, phase: CallPhase, caller: str, callee: str, minutes: float = 0
) -> CallStateChanged:
    return CallStateChanged(
        at=at(minutes),
        origin="edge-1",
        call_id=call_id,
        phase=phase,
        caller=caller,
        callee=callee,
        caller_desk="HD0002",
        callee_desk="HD0001",
        from_tag=f"{call_id}-from",
        to_tag=f"{call_id}-to" if phase != CallPhase.TRYING else "",
    )


def registration(aor: str, kind: str = "registered", minutes: float = 0) -> RegistrationChanged:
    contacts = [] if kind in ("unregistered", "expired") else [f"sip:{aor}@127.0.0.1:5062"]
    return RegistrationChanged(
        at=at(minutes),
        origin="edge-1",
        aor=aor,
        kind=kind,
        contacts=contacts,
        user_agent="Yealink SIP-T54W 96.86.0.100",
    )


def reprovision(
    desk: str, ok: bool = True, minutes: float = 0
) -> ReprovisionConfirmed | ReprovisionFailed:
    if ok:
        return ReprovisionConfirmed(
            at=at(minutes),
            origin="prov-1",
            desk=desk,
            reprovision_id="r1",
            config_version="v1",
            attempts=1,
        )
    return ReprovisionFailed(
        at=at(minutes),
        origin="prov-1",
        desk=desk,
        reprovision_id="r1",
        config_version="v1",
        attempts=3,
        stage="fetch",
    )
