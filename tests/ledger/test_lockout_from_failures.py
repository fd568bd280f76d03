"""A lockout follows from the PIN failures even when its PinLockedOut was never stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Policies
from hotdesk_contracts.events import PinLockedOut, PinRejected
from hotdesk_ledger.aggregates import UserState, decide_user, replay, settle_lockout
from hotdesk_ledger.errors import UserLockedOut
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import at, clear_lockout, log_in, pin_failure

POLICIES = Policies()
LOCKOUT = timedelta(seconds=POLICIES.pin_lockout_seconds)


def failures_without_the_lockout(count: int) -> tuple[UserState, list[PinRejected]]:
    """Decide ``count`` failures, keeping only each PinRejected (a crash after it)."""
    state = UserState(user="100")
    kept: list[PinRejected] = []
    for n in range(count):
        events = decide_user(state, pin_failure("100", now=at(n)), at(n), POLICIES)
        first = events[0]
        assert isinstance(first, PinRejected)
        kept.append(first)
        state = replay(state, [first])
    return state, kept


def test_the_last_allowed_failure_locks_the_user_without_a_lockout_event() -> None:
    state, _ = failures_without_the_lockout(POLICIES.pin_max_failures)
    settled = settle_lockout(state, POLICIES)
    assert settled.locked_until == at(POLICIES.pin_max_failures - 1) + LOCKOUT
    assert settled.locked_at(at(POLICIES.pin_max_failures))
    with pytest.raises(UserLockedOut):
        decide_user(state, pin_failure("100"), at(POLICIES.pin_max_failures), POLICIES)


def test_a_settled_lockout_matches_the_one_its_event_would_have_stored() -> None:
    state = UserState(user="100")
    for n in range(POLICIES.pin_max_failures):
        state = replay(state, decide_user(state, pin_failure("100"), at(n), POLICIES))
    assert settle_lockout(state, POLICIES) == state


def test_after_a_derived_lockout_expires_failures_count_from_one_again() -> None:
    state, _ = failures_without_the_lockout(POLICIES.pin_max_failures)
    later = at(POLICIES.pin_max_failures - 1) + LOCKOUT + timedelta(seconds=1)
    events = decide_user(state, pin_failure("100", now=later), later, POLICIES)
    assert [type(e) for e in events] == [PinRejected]
    first = events[0]
    assert isinstance(first, PinRejected)
    assert first.failures == 1


async def test_a_crash_between_the_failure_and_its_lockout_still_refuses_the_login(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store, POLICIES)
    _, rejected = failures_without_the_lockout(POLICIES.pin_max_failures)
    # Appended as a process that died right after each PinRejected would leave them.
    subject = subjects.user_ledger("100")
    for event in rejected:
        await store.append(subject, [event], None)
    events, _ = await store.load(subject)
    assert not any(isinstance(e, PinLockedOut) for e in events)

    user = await ledger.user("100")
    assert user.locked_until == rejected[-1].at + LOCKOUT
    with pytest.raises(UserLockedOut):
        await ledger.execute(log_in("HD0001", "100", now=at(60)))
    with pytest.raises(UserLockedOut):
        await ledger.execute(pin_failure("100", now=at(60)))
    await ledger.execute(clear_lockout("100", now=at(61)))
    await ledger.execute(log_in("HD0001", "100", now=at(62)))
    assert (await ledger.desk("HD0001")).user == "100"
