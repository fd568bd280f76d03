"""The desk and user aggregates decide and evolve without any I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hotdesk_contracts.directory import Policies
from hotdesk_contracts.events import LoggedIn, LoggedOut, LogoutReason, PinLockedOut, Roamed
from hotdesk_ledger.aggregates import (
    DeskState,
    UserState,
    decide,
    decide_desk,
    decide_user,
    evolve,
    plan_login,
    replay,
    seats_to_leave,
)
from hotdesk_ledger.errors import (
    DeskChanged,
    DeskIdle,
    DomainError,
    NotLockedOut,
    SeatedElsewhere,
    UserLockedOut,
    WrongAggregate,
)
from tests.ledger.factories import T0, at, clear_lockout, log_in, log_out, pin_failure

POLICIES = Policies()


def seated(desk: str, user: str, seq: int = 1) -> DeskState:
    return DeskState(desk=desk, user=user, since=T0, last_seq=seq)


def test_login_on_idle_desk_seats_the_user() -> None:
    events = decide_desk(DeskState(desk="HD0001"), log_in("HD0001", "100", command_id="c1"), T0)
    assert len(events) == 1
    assert isinstance(events[0], LoggedIn)
    assert (events[0].desk, events[0].user, events[0].event_id) == ("HD0001", "100", "c1:0")
    state = evolve(DeskState(desk="HD0001"), events[0])
    assert (state.user, state.since) == ("100", T0)


def test_login_on_a_taken_desk_roams_it_from_the_user_seen() -> None:
    events = decide_desk(seated("HD0001", "100"), log_in("HD0001", "200", seen_user="100"), T0)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, Roamed)
    assert (event.from_user, event.user) == ("100", "200")
    assert evolve(seated("HD0001", "100"), event).user == "200"


def test_login_by_the_user_already_there_decides_nothing() -> None:
    assert decide_desk(seated("HD0001", "100"), log_in("HD0001", "100"), T0) == []


def test_login_when_someone_else_got_there_first_is_refused_with_desk_changed() -> None:
    with pytest.raises(DeskChanged) as err:
        decide_desk(seated("HD0001", "300"), log_in("HD0001", "200", seen_user=None), T0)
    assert err.value.code == "desk_changed"
    assert err.value.actual_user == "300"


def test_logout_of_an_idle_desk_is_refused_with_desk_idle() -> None:
    with pytest.raises(DeskIdle) as err:
        decide_desk(DeskState(desk="HD0001"), log_out("HD0001"), T0)
    assert err.value.code == "desk_idle"


def test_logout_naming_another_user_is_refused_with_desk_changed() -> None:
    with pytest.raises(DeskChanged):
        decide_desk(seated("HD0001", "100"), log_out("HD0001", user="200"), T0)


def test_logout_frees_the_desk_with_the_reason_given() -> None:
    events = decide_desk(
        seated("HD0001", "100"), log_out("HD0001", "100", reason=LogoutReason.ADMIN), T0
    )
    assert len(events) == 1
    assert isinstance(events[0], LoggedOut)
    assert events[0].reason is LogoutReason.ADMIN
    assert evolve(seated("HD0001", "100"), events[0]).user is None


def test_fifth_pin_failure_in_the_window_locks_the_user_out() -> None:
    state = UserState(user="100")
    for n in range(1, 5):
        events = decide_user(state, pin_failure("100", now=at(n)), at(n), POLICIES)
        assert [type(e).__name__ for e in events] == ["PinRejected"]
        state = replay(state, events)
    events = decide_user(state, pin_failure("100", now=at(5)), at(5), POLICIES)
    assert [type(e).__name__ for e in events] == ["PinRejected", "PinLockedOut"]
    lock = events[1]
    assert isinstance(lock, PinLockedOut)
    assert lock.until == at(5) + timedelta(seconds=POLICIES.pin_lockout_seconds)
    state = replay(state, events)
    assert state.locked_at(at(6))


def test_failures_outside_the_window_do_not_count() -> None:
    state = UserState(user="100")
    for n in range(4):
        state = replay(state, decide_user(state, pin_failure("100"), at(n), POLICIES))
    later = at(POLICIES.pin_window_seconds + 10)
    events = decide_user(state, pin_failure("100"), later, POLICIES)
    assert [type(e).__name__ for e in events] == ["PinRejected"]
    assert events[0].failures == 1  # type: ignore[union-attr]


def locked_user(until_seconds: float = 900) -> UserState:
    return UserState(user="100", locked_until=at(until_seconds))


def test_locked_out_user_may_not_log_in_until_the_lockout_lifts() -> None:
    with pytest.raises(UserLockedOut) as err:
        plan_login(
            DeskState(desk="HD0001"), locked_user(), {}, log_in("HD0001", "100"), at(10), POLICIES
        )
    assert err.value.code == "locked_out"
    assert err.value.until == at(900)
    plan = plan_login(
        DeskState(desk="HD0001"), locked_user(), {}, log_in("HD0001", "100"), at(900), POLICIES
    )
    assert [type(e).__name__ for e in plan.seat] == ["LoggedIn"]


def test_locked_out_user_may_not_try_more_pins() -> None:
    with pytest.raises(UserLockedOut):
        decide_user(locked_user(), pin_failure("100"), at(1), POLICIES)


def test_clearing_a_lockout_lifts_it_and_refuses_when_none_is_in_force() -> None:
    events = decide_user(locked_user(), clear_lockout("100"), at(1), POLICIES)
    assert [type(e).__name__ for e in events] == ["PinLockoutCleared"]
    assert not replay(locked_user(), events).locked_at(at(2))
    with pytest.raises(NotLockedOut) as err:
        decide_user(UserState(user="100"), clear_lockout("100"), at(1), POLICIES)
    assert err.value.code == "not_locked_out"


def test_login_elsewhere_plans_a_logout_from_the_old_desk() -> None:
    plan = plan_login(
        DeskState(desk="HD0002"),
        UserState(user="100"),
        {"HD0001": seated("HD0001", "100", seq=7)},
        log_in("HD0002", "100", command_id="c9"),
        T0,
        POLICIES,
    )
    assert [type(e).__name__ for e in plan.seat] == ["LoggedIn"]
    (leave,) = plan.leave["HD0001"]
    assert (leave.reason, leave.user, leave.event_id) == (
        LogoutReason.ELSEWHERE,
        "100",
        "c9:leave:HD0001",
    )


def test_login_without_move_is_refused_while_seated_elsewhere() -> None:
    with pytest.raises(SeatedElsewhere) as err:
        plan_login(
            DeskState(desk="HD0002"),
            UserState(user="100"),
            {"HD0001": seated("HD0001", "100")},
            log_in("HD0002", "100", move=False),
            T0,
            POLICIES,
        )
    assert err.value.desk == "HD0001"


def test_shared_policy_leaves_other_seats_alone() -> None:
    plan = plan_login(
        DeskState(desk="HD0002"),
        UserState(user="100"),
        {"HD0001": seated("HD0001", "100")},
        log_in("HD0002", "100", move=False),
        T0,
        Policies(exclusive=False),
    )
    assert plan.leave == {}


def test_the_newest_seat_is_kept_when_a_race_left_two() -> None:
    seats = {"HD0001": seated("HD0001", "100", seq=4), "HD0002": seated("HD0002", "100", seq=9)}
    assert [s.desk for s in seats_to_leave("100", seats)] == ["HD0001"]
    assert seats_to_leave("100", {"HD0002": seats["HD0002"]}) == []


def test_commands_given_to_the_wrong_aggregate_are_refused() -> None:
    with pytest.raises(WrongAggregate):
        decide(DeskState(desk="HD0001"), pin_failure("100"), T0, POLICIES)
    with pytest.raises(WrongAggregate):
        decide(UserState(user="100"), log_in("HD0001", "100"), T0, POLICIES)
    with pytest.raises(WrongAggregate):
        decide(DeskState(desk="HD0002"), log_in("HD0001", "100"), T0, POLICIES)


def test_every_refusal_is_a_domain_error_with_a_stable_code() -> None:
    codes = {
        cls.code for cls in (DeskChanged, DeskIdle, UserLockedOut, NotLockedOut, SeatedElsewhere)
    }
    assert codes == {
        "desk_changed",
        "desk_idle",
        "locked_out",
        "not_locked_out",
        "seated_elsewhere",
    }
    assert all(issubclass(c, DomainError) for c in (DeskChanged, DeskIdle, UserLockedOut))
