"""Polled gauges and the lag probes against a real nats-server: a probe's value is what
JetStream says when it runs, a failing probe drops its series, a stopped poller
reports nothing, and each kind of reader's lag is the messages it has not applied."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js import api as js_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import encode_event
from hotdesk_contracts.events import Cause, LoggedIn, PinRejected
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.metrics import (
    PolledGauge,
    Poller,
    consumer_backlog,
    durable_lag,
    follower_lag,
    last_sequence,
)
from hotdesk_sip_edge.login_state import LedgerFollower, LoginMap

AT = datetime(2026, 1, 1, tzinfo=UTC)


def observed(reader: InMemoryMetricReader, name: str) -> dict[frozenset[tuple[str, str]], float]:
    data = reader.get_metrics_data()
    out: dict[frozenset[tuple[str, str]], float] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        attributes = frozenset(
                            (k, str(v)) for k, v in (point.attributes or {}).items()
                        )
                        out[attributes] = point.value  # type: ignore[union-attr]
    return out


async def login(js: JetStreamContext, desk: str, user: str) -> int:
    event = LoggedIn(
        event_id=f"{desk}-{user}",
        at=AT,
        cause=Cause(actor="test"),
        correlation_id="c",
        desk=desk,
        user=user,
    )
    ack = await js.publish(subjects.desk_ledger(desk), encode_event(event))
    return int(ack.seq)


async def wrong_pin(js: JetStreamContext, user: str, n: int) -> int:
    event = PinRejected(
        event_id=f"{user}-{n}",
        at=AT,
        cause=Cause(actor="test"),
        correlation_id="c",
        user=user,
        desk="HD0001",
        failures=n,
    )
    ack = await js.publish(subjects.user_ledger(user), encode_event(event))
    return int(ack.seq)


async def test_a_poller_reports_what_its_probes_read_and_drops_what_fails() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    gauge = PolledGauge("hotdesk_test_gauge", "test", provider.get_meter("test"))
    values = {"a": 3.0}

    async def probe_a() -> float:
        return values["a"]

    async def probe_b() -> float:
        raise TimeoutError("NATS away")

    poller = Poller(every=0.05)
    poller.watch(gauge, probe_a, projection="a")
    poller.watch(gauge, probe_b, projection="b")
    assert observed(reader, "hotdesk_test_gauge") == {}
    await poller.poll()
    assert observed(reader, "hotdesk_test_gauge") == {frozenset({("projection", "a")}): 3.0}
    assert gauge.value(projection="b") is None

    stopping = asyncio.Event()
    running = asyncio.create_task(poller.run(stopping))
    values["a"] = 7.0
    for _ in range(200):
        if gauge.value(projection="a") == 7.0:
            break
        await asyncio.sleep(0.02)
    assert observed(reader, "hotdesk_test_gauge") == {frozenset({("projection", "a")}): 7.0}
    stopping.set()
    await asyncio.wait_for(running, 10)
    # A stopped service's values are not shown as current.
    assert observed(reader, "hotdesk_test_gauge") == {}
    provider.shutdown()


async def test_a_durable_consumers_lag_is_the_stream_past_its_ack_floor(
    js: JetStreamContext,
) -> None:
    await EventStore(js).ensure_stream()
    for n in range(5):
        await login(js, f"HD000{n}", "100")
    await js.add_consumer(
        streams.LEDGER.name,
        js_api.ConsumerConfig(
            durable_name="lag-test", ack_policy=js_api.AckPolicy.ALL, deliver_policy=None
        ),
    )
    lag = durable_lag(js, streams.LEDGER.name, "lag-test")
    assert await lag() == 5
    sub = await js.pull_subscribe_bind("lag-test", stream=streams.LEDGER.name)
    msgs = await sub.fetch(3, timeout=5)
    assert await lag() == 5  # delivered is not applied
    await msgs[-1].ack_sync()  # ack policy all: the first three
    assert await lag() == 2
    assert await consumer_backlog(js, streams.LEDGER.name, "lag-test")() == 2


async def test_a_followers_lag_counts_from_the_last_message_on_its_subjects(
    js: JetStreamContext,
) -> None:
    await EventStore(js).ensure_stream()
    assert await last_sequence(js, streams.LEDGER.name, subjects.LEDGER_DESKS) == 0
    logins = LoginMap()
    follower = LedgerFollower(js, logins)
    lag = follower_lag(js, streams.LEDGER.name, subjects.LEDGER_DESKS, lambda: follower.applied)
    await follower.start()
    first = await login(js, "HD0001", "100")
    for _ in range(200):
        if follower.applied == first:
            break
        await asyncio.sleep(0.02)
    assert logins.user_at == {"HD0001": "100"}
    # Events on subjects the follower does not read are no lag of its own.
    await wrong_pin(js, "101", 1)
    assert await lag() == 0
    await follower.stop()
    await login(js, "HD0002", "101")
    last = await login(js, "HD0003", "102")
    assert await lag() == last - first
    assert await last_sequence(js, streams.LEDGER.name) == last
