"""A rebuild never races a running replica into a corrupt read model."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.occupancy import DeskOccupancy
from hotdesk_ledger.projection import ProjectionBusy, ProjectionRunner, fold
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import at, log_in, log_out


async def test_rebuild_is_refused_while_a_replica_runs_and_allowed_once_it_stopped(
    js: JetStreamContext,
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    for n in range(4):
        await ledger.execute(log_in(f"HD{n:04d}", str(100 + n), now=at(n)))
    await ledger.execute(log_out("HD0000", now=at(9)))
    stored = await store.read(subjects.LEDGER_DESKS)
    expected = fold(DeskOccupancy(), [(s.seq, s.event) for s in stored])

    replica = ProjectionRunner(js, DeskOccupancy())
    stopping = asyncio.Event()
    running = asyncio.create_task(replica.run(stopping))
    try:
        for _ in range(100):  # bounded: the replica applies four desks' events
            if await replica.items() == expected:
                break
            await asyncio.sleep(0.05)
        assert await replica.items() == expected

        rebuilder = ProjectionRunner(js, DeskOccupancy())
        with pytest.raises(ProjectionBusy) as err:
            await rebuilder.rebuild(idle_timeout=2.0)
        assert "stop its other runners" in str(err.value)
        assert await rebuilder.items() == expected  # nothing was purged
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)

    assert await rebuilder.rebuild() == await store.last_seq()
    assert await rebuilder.items() == expected
    await rebuilder.stop()
