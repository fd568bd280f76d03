"""Lookups read what the state needs, not an aggregate's whole history."""

from __future__ import annotations

from nats.js import JetStreamContext

from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import at, log_in, log_out


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
