"""The projection runner keeps a KV read model equal to a pure fold of the ledger,
through server restarts, crashes mid-batch and rebuilds."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.events import Cause, LedgerEvent, LoggedIn, PinLockoutCleared
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.occupancy import DeskOccupancy, Occupancy
from hotdesk_ledger.projection import (
    Projection,
    ProjectionRunner,
    fold,
    stream_seq,
    subject_matches,
)
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import at, log_in, log_out, pin_failure
from tests.support.natsserver import NatsServer

DESKS = [f"HD{n:04d}" for n in range(1, 11)]


async def seat_and_free(ledger: Ledger, rounds: int, offset: int = 0) -> None:
    """Each round logs a user into every desk and out again: 2 events per desk."""
    for r in range(offset, offset + rounds):
        for d in DESKS:
            await ledger.execute(log_in(d, f"{r}{d[-2:]}", now=at(r)))
            await ledger.execute(log_out(d, now=at(r)))


async def ledger_fold(store: EventStore, projection: Projection[Occupancy]) -> dict[str, Occupancy]:
    stored = await store.read(subjects.LEDGER_DESKS)
    return fold(projection, [(s.seq, s.event) for s in stored])


@pytest.mark.parametrize("fast_pull", [True, False], ids=["lean-pull", "nats-py-pull"])
async def test_catch_up_writes_the_fold_of_the_ledger(
    js: JetStreamContext, fast_pull: bool
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    await seat_and_free(ledger, 2)
    await ledger.execute(log_in("HD0001", "777", now=at(9)))
    await ledger.execute(pin_failure("777", "HD0001", now=at(9)))  # not a desk event
    ledger_end = await store.last_seq()
    projection = DeskOccupancy()
    runner = ProjectionRunner(js, projection, batch_size=7, fast_pull=fast_pull)
    assert await runner.catch_up() == 2 * 2 * len(DESKS) + 2
    model = await runner.items()
    assert model == await ledger_fold(store, projection)
    assert model["HD0001"].user == "777"
    assert model["HD0001"].events == 5
    assert await runner.checkpoint() == ledger_end
    assert await store.last_seq() == ledger_end  # the runner never writes to the ledger
    await runner.stop()


class SimulatedCrash(Exception):
    """The process died in the middle of a batch."""


class CrashingOccupancy(DeskOccupancy):
    """Dies on the n-th apply, after earlier keys of the batch were written."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.calls = 0
        self.crash_at = crash_at

    def apply(
        self, key: str, current: Occupancy | None, event: LedgerEvent, seq: int
    ) -> Occupancy | None:
        self.calls += 1
        if self.calls == self.crash_at:
            raise SimulatedCrash
        return super().apply(key, current, event, seq)


@pytest.mark.parametrize("fast_pull", [True, False], ids=["lean-pull", "nats-py-pull"])
async def test_a_runner_dying_mid_batch_applies_nothing_twice_after_restart(
    js: JetStreamContext, fast_pull: bool
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    await seat_and_free(ledger, 5)  # 100 events, 10 per desk
    crashing = CrashingOccupancy(crash_at=50)
    first = ProjectionRunner(
        js, crashing, batch_size=100, write_concurrency=2, ack_wait=1.0, fast_pull=fast_pull
    )
    with pytest.raises(SimulatedCrash):
        await first.catch_up()
    await first.stop()
    partial = await first.items()
    assert 0 < len(partial) < len(DESKS)  # some keys written, the batch never acked

    await seat_and_free(ledger, 1, offset=5)  # more events behind the unacked batch
    projection = DeskOccupancy()
    second = ProjectionRunner(
        js, projection, batch_size=100, write_concurrency=2, ack_wait=1.0, fast_pull=fast_pull
    )
    async with asyncio.timeout(30):
        await second.catch_up()
    model = await second.items()
    expected = await ledger_fold(store, projection)
    assert model == expected
    assert all(v.events == 12 for v in model.values())
    await second.stop()


async def test_rebuild_replays_into_the_same_read_model_with_progress(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    await seat_and_free(ledger, 3)
    projection = DeskOccupancy()
    runner = ProjectionRunner(js, projection, batch_size=16)
    await runner.catch_up()
    before = await runner.items()
    seen: list[tuple[int, int]] = []
    applied = await runner.rebuild(lambda done, total: seen.append((done, total)))
    assert applied == 60
    assert await runner.items() == before == await ledger_fold(store, projection)
    assert seen[0] == (0, 60)
    assert seen[-1] == (60, 60)
    await runner.stop()


async def test_a_running_projection_survives_a_nats_server_restart(
    own_nats_server: NatsServer,
) -> None:
    nc = await nats.connect(own_nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    js = nc.jetstream()
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    projection = DeskOccupancy()
    runner = ProjectionRunner(js, projection, batch_size=8, fetch_wait=0.3)
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    try:
        await seat_and_free(ledger, 2)

        async def caught_up() -> None:
            target = await store.last_seq()
            while await runner.checkpoint() < target:
                await asyncio.sleep(0.05)

        async with asyncio.timeout(20):
            await caught_up()
        own_nats_server.restart()
        async with asyncio.timeout(30):
            while True:
                try:
                    await seat_and_free(ledger, 1, offset=2)
                    break
                except (nats.errors.Error, TimeoutError):
                    await asyncio.sleep(0.1)
            await seat_and_free(ledger, 1, offset=3)
            while True:
                try:
                    await caught_up()
                    break
                except (nats.errors.Error, TimeoutError):
                    await asyncio.sleep(0.1)
        model = await runner.items()
        assert model == await ledger_fold(store, projection)
        assert all(v.events >= 6 for v in model.values())
    finally:
        stopping.set()
        async with asyncio.timeout(10):
            await task
        await nc.close()


def test_fold_leaves_out_events_the_projection_has_no_key_for() -> None:
    projection: Projection[Occupancy] = DeskOccupancy()
    cleared = PinLockoutCleared(
        event_id="x", at=at(0), cause=Cause(actor="admin:a"), correlation_id="x", user="100"
    )
    seated = LoggedIn(
        event_id="y",
        at=at(1),
        cause=Cause(actor="user:100"),
        correlation_id="y",
        desk="HD0001",
        user="100",
    )
    assert fold(projection, [(1, cleared), (2, seated)]) == {
        "HD0001": Occupancy(desk="HD0001", user="100", since=at(1), events=1)
    }


class CancellingOccupancy(DeskOccupancy):
    """Has the runner's task cancelled on the n-th apply, in the middle of a batch."""

    def __init__(self, cancel_at: int) -> None:
        super().__init__()
        self.calls = 0
        self.cancel_at = cancel_at
        self.task: asyncio.Task[None] | None = None

    def apply(
        self, key: str, current: Occupancy | None, event: LedgerEvent, seq: int
    ) -> Occupancy | None:
        self.calls += 1
        if self.calls == self.cancel_at and self.task is not None:
            self.task.cancel()  # lands at the runner's next await: its KV writes
        return super().apply(key, current, event, seq)


async def test_a_runner_task_cancelled_mid_batch_applies_nothing_twice_after_restart(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    await seat_and_free(ledger, 5)
    cancelling = CancellingOccupancy(cancel_at=50)
    first = ProjectionRunner(js, cancelling, batch_size=100, write_concurrency=2, ack_wait=1.0)
    stopping = asyncio.Event()
    task = asyncio.create_task(first.run(stopping))
    cancelling.task = task
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(20):
            await task
    await first.stop()
    assert 0 < len(await first.items()) < len(DESKS)

    await seat_and_free(ledger, 1, offset=5)
    projection = DeskOccupancy()
    second = ProjectionRunner(js, projection, batch_size=100, write_concurrency=2, ack_wait=1.0)
    async with asyncio.timeout(30):
        await second.catch_up()
    model = await second.items()
    assert model == await ledger_fold(store, projection)
    assert all(v.events == 12 for v in model.values())
    await second.stop()


async def test_two_replicas_of_a_projection_apply_each_event_exactly_once(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    projection = DeskOccupancy()
    replicas = [
        ProjectionRunner(js, DeskOccupancy(), batch_size=8, fetch_wait=0.2, ack_wait=1.0)
        for _ in range(2)
    ]
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stopping)) for r in replicas]
    try:
        await seat_and_free(ledger, 3)
        target = await store.last_seq()
        async with asyncio.timeout(30):
            while await replicas[0].checkpoint() < target or await replicas[0].pending() > 0:
                await asyncio.sleep(0.05)
        model = await replicas[1].items()
        assert model == await ledger_fold(store, projection)
        assert all(v.events == 6 for v in model.values())
    finally:
        stopping.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)


def test_subjects_match_like_nats_wildcards() -> None:
    assert subject_matches("hotdesk.ledger.desk.HD0001", subjects.LEDGER_DESKS)
    assert not subject_matches("hotdesk.ledger.user.100", subjects.LEDGER_DESKS)
    assert subject_matches("hotdesk.ledger.user.100", subjects.LEDGER_ALL)
    assert not subject_matches("hotdesk.ledger", subjects.LEDGER_ALL)
    assert not subject_matches("hotdesk.ledger.desk.HD0001.x", subjects.LEDGER_DESKS)


def test_the_stream_sequence_is_read_from_both_ack_subject_forms() -> None:
    assert stream_seq("$JS.ACK.HOTDESK_LEDGER.projection-x.1.42.40.1795641989494706450.7") == 42
    assert (
        stream_seq("$JS.ACK.hub.ACCHASH.HOTDESK_LEDGER.projection-x.1.43.40.17956419894.7.tok")
        == 43
    )
    with pytest.raises(ValueError, match="ack subject"):
        stream_seq("hotdesk.ledger.desk.HD0001")
