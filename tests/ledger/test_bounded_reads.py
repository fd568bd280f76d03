"""Lookups read what the state needs, not an aggregate's whole history."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Policies
from hotdesk_ledger.aggregates import UserState, replay, settle_lockout
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import at, clear_lockout, log_in, log_out, pin_failure

POLICIES = Policies()


async def test_a_desk_with_a_long_history_loads_from_its_last_event_alone(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    for n in range(40):
        await ledger.execute(log_in("HD0001", str(100 + n % 3), now=at(2 * n)))
        await ledger.execute(log_out("HD0001", now=at(2 * n + 1)))
    await ledger.execute(log_in("HD0001", "200", now=at(100)))

    before = store.messages_read
    state = await ledger.desk("HD0001")

    assert (state.user, state.since) == ("200", at(100))
    assert state.last_seq == (await store.last_seq())
    assert store.messages_read - before == 1


async def test_a_never_used_desk_reads_nothing_and_is_idle_at_sequence_zero(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    before = store.messages_read
    state = await Ledger(store).desk("HD0404")
    assert (state.user, state.last_seq) == (None, 0)
    assert store.messages_read == before


async def pin_history(ledger: Ledger) -> None:
    """Three lockouts, each cleared, then three more failures: 21 user events."""
    t = 0
    for _ in range(3):
        for _ in range(POLICIES.pin_max_failures):
            await ledger.execute(pin_failure("100", now=at(t)))
            t += 1
        await ledger.execute(clear_lockout("100", now=at(t)))
        t += 1
    for _ in range(3):
        await ledger.execute(pin_failure("100", now=at(t)))
        t += 1


async def full_replay(store: EventStore) -> UserState:
    events, seq = await store.load(subjects.user_ledger("100"))
    state = settle_lockout(replay(UserState(user="100"), events), POLICIES)
    return msgspec.structs.replace(state, last_seq=seq)


async def test_a_user_with_a_long_pin_history_loads_from_a_bounded_tail(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store, POLICIES)
    await pin_history(ledger)

    before = store.messages_read
    state = await ledger.user("100", with_desk=False)
    read = store.messages_read - before

    assert read <= POLICIES.pin_max_failures + 1
    assert state == await full_replay(store)
    assert len(state.recent_failures) == 3


async def test_a_locked_out_user_loads_from_the_lockout_event_alone(js: JetStreamContext) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store, POLICIES)
    for n in range(POLICIES.pin_max_failures):
        await ledger.execute(pin_failure("100", now=at(n)))
    before = store.messages_read
    state = await ledger.user("100", with_desk=False)
    assert state.locked_at(at(POLICIES.pin_max_failures))
    assert store.messages_read - before == 1


async def test_without_direct_gets_a_user_still_loads_right_by_reading_in_full(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    config = (await js.stream_info(store.stream)).config
    config.allow_direct = False
    await js.update_stream(config)
    ledger = Ledger(store, POLICIES)
    await pin_history(ledger)
    assert await ledger.user("100", with_desk=False) == await full_replay(store)
