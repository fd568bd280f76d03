"""The edge's counters as OpenTelemetry instruments (served on the health ``/metrics``).

The hot paths only bump plain :class:`collections.Counter` fields (``transport.stats``,
``auth.stats``, ``registrar.stats``); the instruments here are observable, read once
per collection, so exporting costs the request path nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

METER_NAME = "hotdesk.sip_edge"


class EdgeCounters:
    """Where the counters are read from: callables, so a restarted edge's new objects
    are picked up."""

    def __init__(
        self,
        *,
        transport: Callable[[], Mapping[str, int]],
        auth: Callable[[], Mapping[str, int]],
        registrar: Callable[[], Mapping[str, int]],
        active_calls: Callable[[], int],
    ) -> None:
        self.transport = transport
        self.auth = auth
        self.registrar = registrar
        self.active_calls = active_calls


def _counter(read: Callable[[], int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    return callback


def register_edge_metrics(counters: EdgeCounters, meter: metrics.Meter | None = None) -> None:
    """Create the edge's observable instruments on ``meter`` (default: the process's
    meter provider, which the runtime's telemetry installs)."""
    meter = meter or metrics.get_meter(METER_NAME)
    totals: list[tuple[str, str, Callable[[], int]]] = [
        (
            "hotdesk_sip_registrations",
            "REGISTER requests answered 200 OK",
            lambda: counters.registrar().get("ok", 0),
        ),
        (
            "hotdesk_sip_auth_failures",
            "digest authentications refused (wrong credentials)",
            lambda: counters.auth().get("auth_failures", 0),
        ),
        (
            "hotdesk_sip_auth_blocks",
            "sources blocked after repeated authentication failures",
            lambda: counters.auth().get("auth_blocks", 0),
        ),
        (
            "hotdesk_sip_auth_refused_blocked",
            "requests refused because their source is blocked",
            lambda: counters.auth().get("auth_refused_blocked", 0),
        ),
        (
            "hotdesk_sip_messages_malformed",
            "malformed SIP messages (dropped or answered 400)",
            lambda: (
                counters.transport().get("dropped_malformed", 0)
                + counters.transport().get("answered_malformed", 0)
            ),
        ),
        (
            "hotdesk_sip_messages_rate_limited",
            "SIP messages dropped by the per-source rate limit",
            lambda: counters.transport().get("rate_limited", 0),
        ),
        (
            "hotdesk_sip_messages_received",
            "SIP messages received",
            lambda: counters.transport().get("received", 0),
        ),
    ]
    for name, description, read in totals:
        meter.create_observable_counter(name, callbacks=[_counter(read)], description=description)
    meter.create_observable_gauge(
        "hotdesk_sip_active_calls",
        callbacks=[_counter(counters.active_calls)],
        description="calls in progress through this edge (proxied and IVR)",
    )


__all__ = ["METER_NAME", "EdgeCounters", "register_edge_metrics"]
