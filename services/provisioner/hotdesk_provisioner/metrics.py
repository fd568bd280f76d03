"""The provisioner's metrics: reprovision outcomes, and how far its trigger consumer lags.

``hotdesk_reprovisions_total{outcome, stage}`` counts ``ReprovisionConfirmed``
(``outcome="confirmed"``) and ``ReprovisionFailed`` (``outcome="failed"``, ``stage``
the step it got stuck at: ``notify``, ``fetch`` or ``register``). It is counted by the
replica whose publish of the outcome JetStream stored; a second publish of the same
outcome (another replica taking over the step) is a duplicate and is not counted, so
the sum over replicas counts each reprovision once.

``hotdesk_projection_lag{projection="provisioner-triggers"}``: desk ledger events the
reprovision trigger consumer (shared by every replica) has not processed yet.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from opentelemetry import metrics

from hotdesk_contracts import streams
from hotdesk_runtime.metrics import PolledGauge, Poller, consumer_backlog, projection_lag

from .reprovision import Confirmed, Failed, Stage

METER_NAME = "hotdesk.provisioner"
TRIGGERS_PROJECTION = "provisioner-triggers"
FAILED_STAGES = (Stage.NOTIFY, Stage.FETCH, Stage.REGISTER)
"""The stages a reprovision can fail at."""


class ProvisionerMetrics:
    """The reprovision counter, and the trigger consumer's lag polled by ``poller``."""

    def __init__(
        self,
        js: JetStreamContext,
        trigger_consumer: str,
        *,
        meter: metrics.Meter | None = None,
        lag: PolledGauge | None = None,
        poller: Poller | None = None,
    ) -> None:
        meter = meter or metrics.get_meter(METER_NAME)
        self.reprovisions = meter.create_counter(
            "hotdesk_reprovisions",
            description="Reprovision outcomes: confirmed, or failed at a stage",
        )
        # Every series exists from the start, so a rate over the first outcome is right.
        self.reprovisions.add(0, {"outcome": "confirmed"})
        for stage in FAILED_STAGES:
            self.reprovisions.add(0, {"outcome": "failed", "stage": str(stage)})
        self.poller = poller or Poller()
        self.poller.watch(
            lag or projection_lag(),
            consumer_backlog(js, streams.LEDGER.name, trigger_consumer),
            projection=TRIGGERS_PROJECTION,
            stream=streams.LEDGER.name,
        )

    def outcome(self, action: Confirmed | Failed) -> None:
        """Count one reprovision outcome this replica stored."""
        if isinstance(action, Confirmed):
            self.reprovisions.add(1, {"outcome": "confirmed"})
        else:
            self.reprovisions.add(1, {"outcome": "failed", "stage": action.stage})


__all__ = ["FAILED_STAGES", "TRIGGERS_PROJECTION", "ProvisionerMetrics"]
