"""The edge's counters as OpenTelemetry instruments (served on the health ``/metrics``).

The hot paths only bump plain :class:`collections.Counter` fields (``transport.stats``,
``auth.stats``, ``registrar.stats``); the instruments here are observable, read once
per collection, so exporting costs the request path nothing.

Two gauges need NATS and are polled (:mod:`hotdesk_runtime.metrics`):
``hotdesk_sip_registered_aors``, the addresses of record with bindings in the location
store (the whole system's, the same on every edge: aggregate with ``max``, not
``sum``), and ``hotdesk_projection_lag{projection="sip-edge-logins"}``, how far the
ledger follower that routes by who sits where is behind the desk ledger.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from nats.js import JetStreamContext
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from hotdesk_contracts import streams, subjects
from hotdesk_runtime.metrics import PolledGauge, Poller, follower_lag, projection_lag

from .login_state import LedgerFollower

METER_NAME = "hotdesk.sip_edge"
LOGINS_PROJECTION = "sip-edge-logins"


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


_registered: PolledGauge | None = None


def registered_aors() -> PolledGauge:
    """``hotdesk_sip_registered_aors``, created once per process on the global meter."""
    global _registered
    if _registered is None:
        _registered = PolledGauge(
            "hotdesk_sip_registered_aors",
            "Addresses of record with bindings in the location store (every edge's)",
            metrics.get_meter(METER_NAME),
        )
    return _registered


def location_keys(js: JetStreamContext) -> Callable[[], Awaitable[float]]:
    """The keys in the registrations bucket: one per AOR with bindings. A key lives as
    long as its last binding (per-message TTL) and the bucket keeps one message per
    key, so the stream's message count is the key count."""

    async def probe() -> float:
        info = await js.stream_info(f"KV_{streams.REGISTRATIONS.bucket}")
        return float(info.state.messages)

    return probe


def edge_gauges(
    js: JetStreamContext,
    follower: LedgerFollower,
    *,
    registered: PolledGauge | None = None,
    lag: PolledGauge | None = None,
    poller: Poller | None = None,
) -> Poller:
    """The edge's polled gauges; run the returned poller beside the edge."""
    poller = poller or Poller()
    poller.watch(registered or registered_aors(), location_keys(js))
    poller.watch(
        lag or projection_lag(),
        follower_lag(js, streams.LEDGER.name, subjects.LEDGER_DESKS, lambda: follower.applied),
        projection=LOGINS_PROJECTION,
        stream=streams.LEDGER.name,
    )
    return poller


__all__ = [
    "LOGINS_PROJECTION",
    "METER_NAME",
    "EdgeCounters",
    "edge_gauges",
    "location_keys",
    "register_edge_metrics",
    "registered_aors",
]
