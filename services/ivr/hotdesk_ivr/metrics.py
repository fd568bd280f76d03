"""The IVR's metrics: the calls it is running, and how far its seat index lags.

* ``hotdesk_ivr_calls``: calls this instance has claimed and runs a flow for.
* ``hotdesk_projection_lag{projection="ivr-seat-index"}``: the last sequence on the desk
  ledger subjects minus the last one the seat index applied. Logins wait for the index
  to reach the sequence they need, so a lag that stays up means slow logins.

Logins, logouts, wrong PINs and lockouts are the ledger's facts and are counted once,
from the ledger, by presence (``hotdesk_logins_total`` and the others), not per IVR.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nats.js import JetStreamContext
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from hotdesk_contracts import streams, subjects
from hotdesk_ledger.seats import SeatIndex
from hotdesk_runtime.metrics import PolledGauge, Poller, follower_lag, projection_lag

METER_NAME = "hotdesk.ivr"
SEAT_INDEX_PROJECTION = "ivr-seat-index"


class IvrMetrics:
    """Registers the IVR's gauges; the seat index's lag is polled by ``poller``."""

    def __init__(
        self,
        js: JetStreamContext,
        seat_index: SeatIndex,
        calls: Callable[[], int],
        *,
        meter: metrics.Meter | None = None,
        lag: PolledGauge | None = None,
        poller: Poller | None = None,
    ) -> None:
        meter = meter or metrics.get_meter(METER_NAME)

        def observe_calls(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(calls())]

        meter.create_observable_gauge(
            "hotdesk_ivr_calls",
            callbacks=[observe_calls],
            description="Calls this IVR instance has claimed and runs a flow for",
        )
        self.poller = poller or Poller()
        self.poller.watch(
            lag or projection_lag(),
            follower_lag(
                js, streams.LEDGER.name, subjects.LEDGER_DESKS, lambda: seat_index.applied
            ),
            projection=SEAT_INDEX_PROJECTION,
            stream=streams.LEDGER.name,
        )


__all__ = ["SEAT_INDEX_PROJECTION", "IvrMetrics"]
