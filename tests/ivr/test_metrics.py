"""The IVR's gauges against a real nats-server: the calls it runs, and how far its seat
index is behind the desk ledger (logins wait for it)."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from hotdesk_contracts import streams
from hotdesk_ivr.metrics import SEAT_INDEX_PROJECTION, IvrMetrics
from hotdesk_ledger.seats import SeatIndex
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.metrics import PolledGauge
from tests.runtime.test_metrics import login, observed, wrong_pin


async def test_calls_and_the_seat_indexs_lag_are_exported(js: JetStreamContext) -> None:
    await EventStore(js).ensure_stream()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    index = SeatIndex(js)
    await index.start()
    calls = [2]
    metrics = IvrMetrics(
        js,
        index,
        lambda: calls[0],
        meter=meter,
        lag=PolledGauge("hotdesk_projection_lag", "lag", meter),
    )
    series = frozenset({("projection", SEAT_INDEX_PROJECTION), ("stream", streams.LEDGER.name)})

    first = await login(js, "HD0001", "100")
    await asyncio.wait_for(index.wait_for(first), 10)
    await wrong_pin(js, "100", 1)  # not a desk event: no lag of the index's
    await metrics.poller.poll()
    assert observed(reader, "hotdesk_projection_lag") == {series: 0}
    assert observed(reader, "hotdesk_ivr_calls") == {frozenset(): 2}

    await index.stop()  # an index that stopped following falls behind
    await login(js, "HD0002", "101")
    last = await login(js, "HD0003", "102")
    calls[0] = 0
    await metrics.poller.poll()
    assert observed(reader, "hotdesk_projection_lag") == {series: last - first}
    assert observed(reader, "hotdesk_ivr_calls") == {frozenset(): 0}
    provider.shutdown()
