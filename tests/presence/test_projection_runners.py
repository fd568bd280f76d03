"""The presence read models on a real nats-server: redelivery and restarts never
apply an event twice, and a rebuild gives the same read model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.errors import NoKeysError

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.messages import CallPhase
from hotdesk_ledger.projection import ProjectionRunner, fold
from hotdesk_ledger.store import EventStore, stream_config
from hotdesk_presence.projections import (
    BlfStates,
    BusProjectionRunner,
    DeskSeats,
    DeskStatusFold,
    History,
    UserDirectory,
)
from hotdesk_runtime.nats import ensure_jetstream
from tests.presence.factories import call_state, logged_in, logged_out, registration, reprovision
from tests.support.natsserver import NatsServer


async def seed_ledger(js: JetStreamContext) -> EventStore:
    store = EventStore(js)
    await store.ensure_stream()
    for i in range(5):
        desk = f"HD000{i + 1}"
        await store.append(subjects.desk_ledger(desk), [logged_in(desk, f"10{i}", i)], None)
    await store.append(subjects.desk_ledger("HD0001"), [logged_out("HD0001", "100", 9)], None)
    return store


async def test_ledger_projections_restart_without_double_applying_and_rebuild_the_same(
    js: JetStreamContext,
) -> None:
    store = await seed_ledger(js)
    stored = await store.read(subjects.LEDGER_ALL)
    pairs = [(s.seq, s.event) for s in stored]
    for projection in (DeskSeats(), UserDirectory(), History()):
        runner = ProjectionRunner(js, projection)  # type: ignore[misc]
        expected = fold(projection, pairs)  # type: ignore[misc]
        # A fresh consumer can report nothing pending for a moment: catch up until the
        # model is there (bounded).
        for _ in range(50):
            await runner.catch_up()
            with contextlib.suppress(NoKeysError):
                if await runner.items() == expected:
                    break
            await asyncio.sleep(0.1)
        first = await runner.items()
        await runner.stop()
        # A restarted replica with the same durable consumer finds nothing new to apply.
        again = ProjectionRunner(js, projection)  # type: ignore[misc]
        assert await again.catch_up() == 0
        assert await again.items() == first
        assert first == expected
        await again.rebuild()
        assert await again.items() == first
        await again.stop()
    history = ProjectionRunner(js, History())
    log = await history.get("desk.HD0001")
    assert log is not None
    assert [e.type for e in log.entries] == ["LoggedIn", "LoggedOut"]
    await history.stop()


async def test_bus_folds_skip_redelivered_events_and_survive_a_restart(
    js: JetStreamContext,
) -> None:
    await js.add_stream(stream_config(streams.EDGE))
    await js.add_stream(stream_config(streams.PROVISIONING))
    await js.publish(
        subjects.edge_registration("HD0001", "registered"),
        msgspec.json.encode(registration("HD0001")),
    )
    await js.publish(
        subjects.provisioning_event("HD0001"), msgspec.json.encode(reprovision("HD0001"))
    )
    for phase in (CallPhase.RINGING, CallPhase.ANSWERED):
        await js.publish(
            subjects.edge_call_state("100"),
            msgspec.json.encode(call_state("c1", phase, "101", "100")),
        )
    status = BusProjectionRunner(js, DeskStatusFold())
    assert await status.catch_up() == 2
    desk = await status.get("HD0001")
    assert desk is not None
    assert desk.online
    assert desk.reprovision == "confirmed"

    blf = BusProjectionRunner(js, BlfStates())
    await blf.catch_up()
    lamp = await blf.get("100")
    assert lamp is not None
    assert (lamp.state, lamp.version) == ("confirmed", 2)
    # The same deliveries again (as after a crash before the ack) change nothing.
    sub = await js.pull_subscribe(subjects.EDGE_CALL_STATE_ALL, stream=streams.EDGE.name)
    for msg in await sub.fetch(2, timeout=2):
        seq = msg.metadata.sequence.stream
        await blf.apply_delivery(streams.EDGE.name, seq, msg.data, msg.subject)
    lamp = await blf.get("100")
    assert lamp is not None
    assert lamp.version == 2
    await blf.stop()
    # A restarted replica picks up where the durable consumer stopped.
    await js.publish(
        subjects.edge_call_state("100"),
        msgspec.json.encode(call_state("c1", CallPhase.ENDED, "101", "100")),
    )
    restarted = BusProjectionRunner(js, BlfStates())
    assert await restarted.catch_up() == 1
    lamp = await restarted.get("100")
    assert lamp is not None
    assert (lamp.state, lamp.version) == ("terminated", 3)
    await restarted.stop()
    await status.stop()


async def test_blf_writes_each_party_once_per_call_phase_from_the_edges_two_copies(
    js: JetStreamContext,
) -> None:
    """The edge publishes every call-state event on the caller's and the callee's
    subject; each party's value is written once per phase (version +1; the callee's
    from its ringing, when its side has a To-tag), live, on a redelivery of every copy,
    and in a rebuild from the stream."""
    await js.add_stream(stream_config(streams.EDGE))
    blf = BusProjectionRunner(js, BlfStates())
    kv_stream = f"KV_{streams.BLF.bucket}"
    phases = [CallPhase.TRYING, CallPhase.RINGING, CallPhase.ANSWERED, CallPhase.ENDED]
    seen: list[tuple[int, int | None, int, int]] = []
    for phase in phases:
        data = msgspec.json.encode(call_state("c1", phase, "101", "100"))
        for party in ("101", "100"):
            await js.publish(subjects.edge_call_state(party), data)
        await blf.catch_up()
        caller, callee = await blf.get("101"), await blf.get("100")
        assert caller is not None
        # Every KV write is a message of the bucket's stream (history 1 keeps the last
        # sequence): it counts the writes.
        writes = (await js.stream_info(kv_stream)).state.last_seq
        seen.append((caller.version, callee.version if callee else None, writes))
    assert seen == [(1, None, 1), (2, 1, 3), (3, 2, 5), (4, 3, 7)]
    states = {p: await blf.get(p) for p in ("100", "101")}
    assert {p: (s.state, s.version) for p, s in states.items() if s} == {
        "100": ("terminated", 3),
        "101": ("terminated", 4),
    }
    # Every copy delivered again (a crash before the acks) writes nothing.
    sub = await js.pull_subscribe(subjects.EDGE_CALL_STATE_ALL, stream=streams.EDGE.name)
    msgs = await sub.fetch(8, timeout=2)
    assert len(msgs) == 8
    for msg in msgs:
        seq = msg.metadata.sequence.stream
        assert await blf.apply_delivery(streams.EDGE.name, seq, msg.data, msg.subject) == 0
    assert (await js.stream_info(kv_stream)).state.last_seq == 7
    await blf.stop()
    # A rebuild from the start of the stream (a new projection) folds to the same values.
    rebuilt = BusProjectionRunner(js, BlfStates(name="presence-blf-rebuild", bucket="blf_rebuild"))
    await rebuilt.catch_up()
    assert {p: await rebuilt.get(p) for p in ("100", "101")} == states
    assert (await js.stream_info("KV_blf_rebuild")).state.last_seq == 7
    await rebuilt.stop()


async def test_running_bus_and_ledger_projections_survive_a_nats_server_restart(
    own_nats_server: NatsServer,
) -> None:
    nc = await nats.connect(own_nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await ensure_jetstream(js)
    stopping = asyncio.Event()
    blf = BusProjectionRunner(js, BlfStates(), fetch_wait=0.2)
    # A batch in flight when the server went away comes back after ack_wait.
    seats = ProjectionRunner(js, DeskSeats(), fetch_wait=0.2, ack_wait=2.0)
    tasks = [asyncio.create_task(blf.run(stopping)), asyncio.create_task(seats.run(stopping))]
    store = EventStore(js)

    async def publish(call_id: str, phase: CallPhase) -> None:
        data = msgspec.json.encode(call_state(call_id, phase, "101", "100"))
        # Right after a restart JetStream may need a moment before it answers.
        for _ in range(50):
            with contextlib.suppress(nats.errors.TimeoutError, nats.js.errors.Error):
                await js.publish(subjects.edge_call_state("100"), data, timeout=1.0)
                return
            await asyncio.sleep(0.1)
        raise AssertionError("JetStream did not come back")

    async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
        for _ in range(600):
            with contextlib.suppress(Exception):
                if await check():
                    return
            await asyncio.sleep(0.05)
        crashed = [t for t in tasks if t.done()]
        raise AssertionError(f"the read model did not catch up: {check} {crashed}")

    async def lamp_version(n: int) -> bool:
        lamp = await blf.get("100")
        return lamp is not None and lamp.version == n

    async def seated(user: str | None) -> bool:
        seat = await seats.get("HD0001")
        return seat is not None and seat.user == user

    try:
        await publish("c1", CallPhase.RINGING)
        await store.append(subjects.desk_ledger("HD0001"), [logged_in("HD0001", "100")], None)
        await eventually(lambda: lamp_version(1))
        await eventually(lambda: seated("100"))
        own_nats_server.restart()
        for _ in range(200):
            if nc.is_connected:
                break
            await asyncio.sleep(0.05)
        await publish("c1", CallPhase.ANSWERED)  # JetStream answers again from here
        await publish("c1", CallPhase.ENDED)
        await store.append(subjects.desk_ledger("HD0001"), [logged_out("HD0001", "100")], None)
        await eventually(lambda: lamp_version(3))
        await eventually(lambda: seated(None))
        lamp = await blf.get("100")
        assert lamp is not None
        assert lamp.state == "terminated"
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        await nc.close()
