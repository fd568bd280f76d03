"""Auto-logout policies, pure: when must a seated user be logged out, and why.

Global ``directory.policies`` apply unless the desk's ``policy`` overrides them. Three
rules: no calls for ``idle_logout_minutes``; a login older than ``max_login_minutes``;
the daily ``daily_logout`` time (``HH:MM`` in ``timezone``) passed since the login.
Never during a call: a rule that fires mid-call waits until the call has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from hotdesk_contracts.directory import Desk, Policies
from hotdesk_contracts.events import LogoutReason

_UTC = ZoneInfo("UTC")

ACTOR = "system:auto-logout"
"""``cause.actor`` of every automatic logout."""


class PolicyError(ValueError):
    """A policy value that cannot be used (e.g. a malformed ``daily_logout``)."""


@dataclass(frozen=True)
class EffectivePolicy:
    """The rules for one desk after per-desk overrides (0 / ``None`` disables)."""

    idle_minutes: int = 0
    max_minutes: int = 0
    daily_logout: time | None = None
    tz: ZoneInfo = _UTC


def parse_daily(value: str) -> time | None:
    """``HH:MM`` as a time; empty disables."""
    if not value:
        return None
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise PolicyError(f"daily_logout must be HH:MM, not {value!r}") from exc


def effective_policy(policies: Policies, desk: Desk | None) -> EffectivePolicy:
    """Global policies with the desk's overrides applied."""
    own = desk.policy if desk is not None else None
    idle = policies.idle_logout_minutes
    longest = policies.max_login_minutes
    daily = policies.daily_logout
    if own is not None:
        idle = own.idle_logout_minutes if own.idle_logout_minutes is not None else idle
        longest = own.max_login_minutes if own.max_login_minutes is not None else longest
        daily = own.daily_logout if own.daily_logout is not None else daily
    return EffectivePolicy(
        idle_minutes=idle,
        max_minutes=longest,
        daily_logout=parse_daily(daily),
        tz=ZoneInfo(policies.timezone or "UTC"),
    )


@dataclass(frozen=True)
class Seat:
    """A seated user as the policies see it."""

    desk: str
    user: str
    since: datetime
    """When the user logged in (or roamed) here."""
    in_call: bool = False
    last_call: datetime | None = None
    """When the user's last call changed state (a call start or end)."""


def last_daily(at: time, tz: ZoneInfo, now: datetime) -> datetime:
    """The latest occurrence of local time ``at`` at or before ``now``."""
    local = now.astimezone(tz)
    today = datetime.combine(local.date(), at, tzinfo=tz)
    return today if today <= local else today - timedelta(days=1)


def due(seat: Seat, policy: EffectivePolicy, now: datetime) -> LogoutReason | None:
    """The reason ``seat`` must be logged out at ``now``, or ``None``."""
    if seat.in_call:
        return None  # deferred: checked again once the call has ended
    if (
        policy.daily_logout is not None
        and last_daily(policy.daily_logout, policy.tz, now) > seat.since
    ):
        return LogoutReason.AUTO_SCHEDULE
    if policy.max_minutes > 0 and now >= seat.since + timedelta(minutes=policy.max_minutes):
        return LogoutReason.AUTO_MAX_DURATION
    if policy.idle_minutes > 0:
        active = max(seat.since, seat.last_call) if seat.last_call else seat.since
        if now >= active + timedelta(minutes=policy.idle_minutes):
            return LogoutReason.AUTO_IDLE
    return None
