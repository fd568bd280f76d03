"""The edge's counters are exported as OpenTelemetry instruments."""

from __future__ import annotations

from collections import Counter

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from hotdesk_sip_edge.edge_metrics import EdgeCounters, register_edge_metrics


def test_edge_counters_appear_as_metrics_with_their_current_values() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    transport: Counter[str] = Counter(dropped_malformed=2, answered_malformed=1, received=9)
    auth: Counter[str] = Counter(auth_failures=4, auth_blocks=1)
    registrar: Counter[str] = Counter(ok=7)
    calls = [3]
    register_edge_metrics(
        EdgeCounters(
            transport=lambda: transport,
            auth=lambda: auth,
            registrar=lambda: registrar,
            active_calls=lambda: calls[0],
        ),
        provider.get_meter("test"),
    )
    registrar["ok"] += 1
    calls[0] = 2
    data = reader.get_metrics_data()
    assert data is not None
    values = {
        metric.name: next(iter(metric.data.data_points)).value  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    assert values["hotdesk_sip_registrations"] == 8
    assert values["hotdesk_sip_auth_failures"] == 4
    assert values["hotdesk_sip_auth_blocks"] == 1
    assert values["hotdesk_sip_messages_malformed"] == 3
    assert values["hotdesk_sip_active_calls"] == 2
    provider.shutdown()
