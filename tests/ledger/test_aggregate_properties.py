"""Random command sequences never break the aggregates' invariants, and replaying the
events from scratch always yields the state built up incrementally."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from hotdesk_contracts.directory import Policies
from hotdesk_contracts.events import LedgerEvent, LoggedIn, LoggedOut, LogoutReason, Roamed
from hotdesk_ledger.aggregates import (
    DeskState,
    UserState,
    decide_desk,
    decide_user,
    evolve,
    plan_login,
    replay,
)
from hotdesk_ledger.errors import DeskChanged, DeskIdle, DomainError, UserLockedOut
from tests.ledger.factories import at, clear_lockout, log_in, log_out, pin_failure

DESKS = ["HD0001", "HD0002", "HD0003"]
USERS = ["100", "101", "102"]
POLICIES = Policies(pin_max_failures=3, pin_window_seconds=60, pin_lockout_seconds=120)

user_or_none = st.one_of(st.none(), st.sampled_from(USERS))
steps = st.lists(
    st.tuples(
        st.sampled_from(["login", "login_seen", "logout", "logout_user", "pin", "clear"]),
        st.sampled_from(DESKS),
        st.sampled_from(USERS),
        user_or_none,
        st.integers(min_value=0, max_value=90),
    ),
    max_size=60,
)


@dataclass
class World:
    """An in-memory ledger: events per aggregate, states built incrementally."""

    desks: dict[str, DeskState] = field(default_factory=dict)
    users: dict[str, UserState] = field(default_factory=dict)
    desk_log: dict[str, list[LedgerEvent]] = field(default_factory=dict)
    user_log: dict[str, list[LedgerEvent]] = field(default_factory=dict)

    def desk(self, d: str) -> DeskState:
        return self.desks.get(d, DeskState(desk=d))

    def user(self, u: str) -> UserState:
        return self.users.get(u, UserState(user=u))

    def append_desk(self, d: str, events: list[LedgerEvent]) -> None:
        for e in events:
            self.desks[d] = evolve(self.desk(d), e)
            self.desk_log.setdefault(d, []).append(e)

    def append_user(self, u: str, events: list[LedgerEvent]) -> None:
        for e in events:
            self.users[u] = evolve(self.user(u), e)
            self.user_log.setdefault(u, []).append(e)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_random_commands_keep_every_invariant(
    script: list[tuple[str, str, str, str | None, int]],
) -> None:
    world = World()
    clock = 0
    for n, (kind, desk, user, other, dt) in enumerate(script):
        clock += dt
        now = at(clock)
        cid = f"c{n}"
        before = world.desk(desk)
        try:
            if kind in ("login", "login_seen"):
                seen = before.user if kind == "login_seen" else other
                seats = {d: s for d, s in world.desks.items() if s.user == user}
                was_locked = world.user(user).locked_at(now)
                plan = plan_login(
                    before,
                    world.user(user),
                    seats,
                    log_in(desk, user, seen, now=now, command_id=cid),
                    now,
                    POLICIES,
                )
                world.append_desk(desk, list(plan.seat))
                for d, leave in plan.leave.items():
                    world.append_desk(d, list(leave))
                assert not was_locked
                if kind == "login_seen":
                    assert world.desk(desk).user == user
            elif kind in ("logout", "logout_user"):
                named = other if kind == "logout_user" else None
                world.append_desk(
                    desk,
                    list(decide_desk(before, log_out(desk, named, now=now, command_id=cid), now)),
                )
            elif kind == "pin":
                command = pin_failure(user, desk, now=now, command_id=cid)
                world.append_user(user, list(decide_user(world.user(user), command, now, POLICIES)))
            else:
                command_c = clear_lockout(user, now=now, command_id=cid)
                world.append_user(
                    user, list(decide_user(world.user(user), command_c, now, POLICIES))
                )
        except DeskChanged:
            assert kind != "login_seen"
            assert world.desk(desk) == before
        except DeskIdle:
            assert before.user is None
        except UserLockedOut:
            assert world.user(user).locked_at(now)
        except DomainError:
            pass

        # A user sits at one desk at most (exclusive policy), a desk holds one user.
        sitting = [s.user for s in world.desks.values() if s.user is not None]
        assert len(sitting) == len(set(sitting))
        for d, events in world.desk_log.items():
            assert isinstance(events[-1], LoggedIn | LoggedOut | Roamed)
            assert events[-1].desk == d
        # The PIN failure memory stays bounded.
        for u in world.users.values():
            assert len(u.recent_failures) <= POLICIES.pin_max_failures

    for d, events in world.desk_log.items():
        assert replay(DeskState(desk=d), events) == world.desks[d]
        # Every logout elsewhere names the user who really sat there.
        for e in events:
            if isinstance(e, LoggedOut) and e.reason is LogoutReason.ELSEWHERE:
                assert e.event_id.endswith(f":leave:{d}")
    for u, events in world.user_log.items():
        assert replay(UserState(user=u), events) == world.users[u]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=30))
def test_pin_failures_lock_out_exactly_at_the_threshold_within_the_window(gaps: list[int]) -> None:
    state = UserState(user="100")
    clock = 0
    times: list[int] = []
    for n, gap in enumerate(gaps):
        clock += gap
        now = at(clock)
        if state.locked_at(now):
            continue
        events = decide_user(state, pin_failure("100", now=now, command_id=f"p{n}"), now, POLICIES)
        # Expected count: failures since the last lockout inside the window.
        times.append(clock)
        in_window = [t for t in times if t > clock - POLICIES.pin_window_seconds]
        assert events[0].failures == len(in_window)  # type: ignore[union-attr]
        locks = len(in_window) >= POLICIES.pin_max_failures
        assert (len(events) == 2) == locks
        if locks:
            times = []
        state = replay(state, events)
