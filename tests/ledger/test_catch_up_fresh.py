"""A brand-new projection's first catch-up applies everything already in the ledger."""

from __future__ import annotations

from nats.js import JetStreamContext

from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.occupancy import DeskOccupancy
from hotdesk_ledger.projection import ProjectionRunner
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import at, log_in

ROUNDS = 30


async def test_every_fresh_consumer_catches_up_on_the_whole_ledger(js: JetStreamContext) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    for n in range(5):
        await ledger.execute(log_in(f"HD{n:04d}", str(100 + n), now=at(n)))
    ledger_end = await store.last_seq()
    applied: list[int] = []
    seated: list[int] = []
    for round_ in range(ROUNDS):
        projection = DeskOccupancy(name=f"fresh-{round_}", bucket=f"fresh_{round_}")
        runner = ProjectionRunner(js, projection, fast_pull=round_ % 2 == 0)
        applied.append(await runner.catch_up())
        seated.append(len(await runner.items()))
        await runner.stop()
    assert applied == [ledger_end] * ROUNDS
    assert seated == [5] * ROUNDS


async def test_items_of_an_empty_read_model_is_empty(js: JetStreamContext) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    runner = ProjectionRunner(js, DeskOccupancy(name="empty", bucket="empty_model"))
    assert await runner.catch_up() == 0
    assert await runner.items() == {}
    await runner.stop()
