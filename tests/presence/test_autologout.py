"""Auto-logout: idle timeout, maximum duration and daily time, never during a call."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Desk, DeskPolicy, Policies
from hotdesk_contracts.events import LoggedOut, LogoutReason
from hotdesk_contracts.messages import CallPhase
from hotdesk_presence.autologout import (
    EffectivePolicy,
    PolicyError,
    Seat,
    due,
    effective_policy,
    parse_daily,
)
from hotdesk_presence.main import AutoLogout
from tests.presence.conftest import DIRECTORY, Presence
from tests.presence.factories import at, call_state, logged_in

IDLE_30 = effective_policy(Policies(idle_logout_minutes=30), None)


def seat(**kw: object) -> Seat:
    fields: dict[str, object] = {"desk": "HD0001", "user": "100", "since": at(0)}
    fields.update(kw)
    return Seat(**fields)  # type: ignore[arg-type]


def test_idle_timeout_counts_from_the_login_or_the_last_call() -> None:
    assert due(seat(), IDLE_30, at(29)) is None
    assert due(seat(), IDLE_30, at(30)) == LogoutReason.AUTO_IDLE
    assert due(seat(last_call=at(20)), IDLE_30, at(40)) is None
    assert due(seat(last_call=at(20)), IDLE_30, at(50)) == LogoutReason.AUTO_IDLE


def test_no_logout_during_a_call_it_waits_for_the_end() -> None:
    longest = effective_policy(Policies(max_login_minutes=60), None)
    assert due(seat(in_call=True, last_call=at(50)), longest, at(90)) is None
    assert due(seat(last_call=at(95)), longest, at(96)) == LogoutReason.AUTO_MAX_DURATION
    assert due(seat(in_call=True), IDLE_30, at(300)) is None


def test_daily_logout_time_is_in_the_configured_time_zone() -> None:
    # 2 March 2026: Berlin is UTC+1, so 18:00 there is 17:00 UTC.
    berlin = effective_policy(Policies(daily_logout="18:00", timezone="Europe/Berlin"), None)
    morning = seat(since=datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    assert due(morning, berlin, datetime(2026, 3, 2, 16, 59, tzinfo=UTC)) is None
    assert due(morning, berlin, datetime(2026, 3, 2, 17, 0, tzinfo=UTC)) == (
        LogoutReason.AUTO_SCHEDULE
    )
    late = seat(since=datetime(2026, 3, 2, 17, 30, tzinfo=UTC))
    assert due(late, berlin, datetime(2026, 3, 2, 23, 0, tzinfo=UTC)) is None
    assert due(late, berlin, datetime(2026, 3, 3, 17, 0, tzinfo=UTC)) == LogoutReason.AUTO_SCHEDULE


def test_a_desk_policy_overrides_the_global_one() -> None:
    policies = Policies(idle_logout_minutes=30, daily_logout="18:00")
    desk = Desk(
        name="HD0001",
        mac="805EC0000001",
        sip_password="x",
        policy=DeskPolicy(idle_logout_minutes=0, max_login_minutes=120, daily_logout=""),
    )
    assert effective_policy(policies, desk) == EffectivePolicy(max_minutes=120)
    assert effective_policy(policies, None).idle_minutes == 30
    assert due(seat(), effective_policy(policies, desk), at(119)) is None


def test_a_malformed_daily_time_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="HH:MM"):
        parse_daily("six pm")


async def test_the_scheduler_defers_during_a_call_then_logs_out_as_the_system(
    presence: Presence, js: JetStreamContext
) -> None:
    directory = msgspec.structs.replace(DIRECTORY, policies=Policies(max_login_minutes=60))
    await presence.append(logged_in("HD0001", "100", 0), logged_in("HD0002", "101", 50))
    await js.publish(
        subjects.edge_call_state("100"),
        msgspec.json.encode(call_state("c1", CallPhase.ANSWERED, "100", "102", 55)),
    )
    await presence.settle()
    now = [at(90)]
    auto = AutoLogout(
        presence.parts["read"], lambda: directory, presence.parts["execute"], lambda: now[0]
    )
    assert await auto.tick() == []  # HD0001 is over its hour but 100 is in a call

    await js.publish(
        subjects.edge_call_state("100"),
        msgspec.json.encode(call_state("c1", CallPhase.ENDED, "100", "102", 95)),
    )
    await presence.settle()
    now[0] = at(96)
    events = await auto.tick()
    assert [(e.desk, e.reason, e.cause.actor) for e in events if isinstance(e, LoggedOut)] == [
        ("HD0001", LogoutReason.AUTO_MAX_DURATION, "system:auto-logout")
    ]
    await presence.settle()
    assert await auto.tick() == []  # HD0002 has sat 46 minutes only
    now[0] = at(111)
    [late] = await auto.tick()
    assert isinstance(late, LoggedOut)
    assert (late.desk, late.user) == ("HD0002", "101")
