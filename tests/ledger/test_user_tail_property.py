"""Replaying a user's bounded tail decides exactly as replaying their whole history."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hotdesk_contracts.directory import Policies
from hotdesk_contracts.events import LedgerEvent
from hotdesk_ledger.aggregates import (
    UserState,
    decide_user,
    replay,
    settle_lockout,
    user_history_complete,
)
from hotdesk_ledger.errors import DomainError
from tests.ledger.factories import at, clear_lockout, pin_failure

POLICIES = Policies(pin_max_failures=3, pin_window_seconds=100, pin_lockout_seconds=50)

steps = st.lists(
    st.tuples(st.sampled_from(["fail", "fail", "fail", "clear"]), st.integers(1, 80)),
    max_size=40,
)


def tail_of(history: list[LedgerEvent]) -> list[LedgerEvent]:
    tail: list[LedgerEvent] = []
    for event in reversed(history):
        tail.append(event)
        if user_history_complete(tail, POLICIES):
            break
    return tail[::-1]


@settings(max_examples=200, deadline=None)
@given(steps)
def test_the_tail_a_lookup_stops_at_gives_the_same_decisions(
    script: list[tuple[str, int]],
) -> None:
    history: list[LedgerEvent] = []
    state = UserState(user="100")
    t = 0
    for kind, gap in script:
        t += gap
        command = (
            pin_failure("100", now=at(t)) if kind == "fail" else clear_lockout("100", now=at(t))
        )
        try:
            events = decide_user(state, command, at(t), POLICIES)
        except DomainError:
            continue
        history.extend(events)
        state = replay(state, events)
    full = settle_lockout(replay(UserState(user="100"), history), POLICIES)
    tail = settle_lockout(replay(UserState(user="100"), tail_of(history)), POLICIES)
    assert tail.recent_failures == full.recent_failures
    for later in range(t, t + 120, 5):
        assert tail.locked_at(at(later)) == full.locked_at(at(later))
        assert tail.failures_within(at(later), 100) == full.failures_within(at(later), 100)
