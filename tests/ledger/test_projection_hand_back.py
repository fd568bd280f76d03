"""A projection runner that gets a batch with a gap, as after a replica died holding
part of the stream, applies what continues the ack floor and hands the rest back."""

from __future__ import annotations

import asyncio

import msgspec
from nats.js import JetStreamContext

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.events import LedgerEvent
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.occupancy import DeskOccupancy
from hotdesk_ledger.projection import ProjectionRunner, continuing, fold, in_stream_order
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


def _delivery(seq: int, delivered: int) -> tuple[str, str, bytes]:
    reply = f"$JS.ACK.HOTDESK_LEDGER.projection-x.{delivered}.{seq}.{delivered}.0.0"
    return ("hotdesk.ledger.desk.HD0001", reply, b"")


def test_a_batch_is_put_in_stream_order_each_sequence_once_its_last_delivery_kept() -> None:
    batch = [_delivery(2, 1), _delivery(3, 1), _delivery(1, 2), _delivery(2, 2)]
    assert in_stream_order(batch) == [_delivery(1, 2), _delivery(2, 2), _delivery(3, 1)]
    assert in_stream_order([]) == []


class Seen(msgspec.Struct, frozen=True):
    seqs: tuple[int, ...] = ()


class SeenInOrder:
    """Every event's stream sequence under one key, in the order they were applied."""

    name = "seen-in-order"
    bucket = "test_seen_in_order"
    filter_subjects = [subjects.LEDGER_ALL]
    value_type = Seen

    def keys(self, event: LedgerEvent) -> list[str]:
        return ["all"]

    def apply(self, key: str, current: Seen | None, event: LedgerEvent, seq: int) -> Seen:
        return Seen((*(current or Seen()).seqs, seq))


async def test_an_event_redelivered_after_later_ones_in_one_batch_is_applied_in_order(
    js: JetStreamContext,
) -> None:
    """A handed-back message that comes again behind later ones, its old delivery still
    in the batch: folded in arrival order, the key would take 2 and 3 and then skip 1
    as already applied (what a scale run saw after a node and a replica died)."""
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    for n in range(3):
        await ledger.execute(log_in(f"HD{n:04d}", str(100 + n), now=at(n)))
    seqs = [s.seq for s in await store.read(subjects.LEDGER_ALL)]
    assert len(seqs) == 3

    runner = ProjectionRunner(js, SeenInOrder(), ack_wait=30.0)
    await runner.start()
    puller = await js.pull_subscribe_bind(durable=runner.consumer, stream=streams.LEDGER.name)
    first = await puller.fetch(3, timeout=5)
    for msg in first:
        await msg.nak()
    again = await puller.fetch(3, timeout=5)
    await puller.unsubscribe()
    assert [m.metadata.sequence.stream for m in again] == seqs
    arrived = [first[1], again[2], again[0], again[1]]  # 2 (old delivery), 3, 1, 2
    batches = [[(m.subject, m.reply, m.data) for m in arrived]]

    async def fetch(wait: float, limit: int | None = None) -> list[tuple[str, str, bytes]]:
        return batches.pop() if batches else []

    runner._fetch = fetch  # type: ignore[method-assign]
    assert await runner.process_batch() == 3
    assert await runner.items() == {"all": Seen(tuple(seqs))}
    assert await runner.checkpoint() == seqs[-1]
    info = await js.consumer_info(streams.LEDGER.name, runner.consumer)
    assert info.ack_floor.stream_seq == seqs[-1]
    assert info.num_ack_pending == 0
