"""A projection runner that gets a batch with a gap, as after a replica died holding
part of the stream, applies what continues the ack floor and hands the rest back."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from hotdesk_contracts import streams, subjects
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.occupancy import DeskOccupancy
from hotdesk_ledger.projection import ProjectionRunner, continuing, fold
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import at, log_in


def test_continuing_counts_the_run_that_follows_the_floor() -> None:
    assert continuing([4, 5, 6, 9], 3) == 3
    assert continuing([5, 6], 3) == 0
    assert continuing([], 3) == 0


async def test_a_batch_with_a_gap_applies_the_part_after_the_floor_and_hands_back_the_rest(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    for n in range(9):
        await ledger.execute(log_in(f"HD{n:04d}", str(100 + n), now=at(n)))
    stored = await store.read(subjects.LEDGER_DESKS)
    assert len(stored) == 9
    expected = fold(DeskOccupancy(), [(s.seq, s.event) for s in stored])

    runner = ProjectionRunner(js, DeskOccupancy(), ack_wait=4.0)
    await runner.start()
    # A replica pulled all nine and died: before it did, it handed back the first and
    # the last three (they come again at once); the middle three come again only when
    # their ack wait has run out.
    dead = await js.pull_subscribe_bind(durable=runner.consumer, stream=streams.LEDGER.name)
    held = await dead.fetch(9, timeout=5)
    assert len(held) == 9
    for msg in held[:3] + held[6:]:
        await msg.nak()
    await dead.unsubscribe()

    applied = await runner.process_batch()

    # The batch was 1-3 and 7-9: 1-3 continue the floor and are applied (and acked:
    # policy "all" acknowledges nothing else below them); 7-9 wait for 4-6.
    assert applied == 3
    assert await runner.checkpoint() == stored[2].seq
    stopping = asyncio.Event()
    running = asyncio.create_task(runner.run(stopping))
    try:
        for _ in range(300):  # bounded: the middle comes back after its 4 s ack wait
            if await runner.items() == expected:
                break
            await asyncio.sleep(0.05)
        assert await runner.items() == expected
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)
