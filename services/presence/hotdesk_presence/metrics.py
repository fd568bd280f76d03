"""Presence's metrics: the ledger's hot-desking facts, and how far its projections lag.

The counters are fed by the ``presence-history`` projection, which reads every ledger
event: its runner reports each acknowledged batch (``ProjectionRunner.on_applied``),
and the durable consumer hands each batch to one replica. Summed over presence
replicas, every ledger event is counted once, whichever service appended it (the IVR,
the admin API, auto-logout, a desk removed from the directory). A replica starting on
a consumer that is behind counts the backlog it applies, so a fresh deployment on an
existing ledger counts its history once.

=====================================  ==============================================
``hotdesk_logins_total{kind}``          ``login`` (``LoggedIn``: an idle desk) or
                                        ``roam`` (``Roamed``: the desk changed hands)
``hotdesk_logouts_total{reason}``       ``LoggedOut`` by its reason (``user_key``,
                                        ``admin``, ``auto_idle``, ...), and ``roamed``
                                        for the user a ``Roamed`` displaced
``hotdesk_pin_failures_total``          ``PinRejected``: wrong PINs
``hotdesk_pin_lockouts_total``          ``PinLockedOut``: users locked out
``hotdesk_pin_lockouts_cleared_total``  ``PinLockoutCleared``: lockouts an admin lifted
``hotdesk_projection_lag{projection,    each projection's lag (see
stream}``                               :mod:`hotdesk_runtime.metrics`)
=====================================  ==============================================

Logins minus logouts is the number of seated desks. No series carries a user or desk:
those belong in the ledger, not in a time-series database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from nats.js import JetStreamContext
from opentelemetry import metrics

from hotdesk_contracts.events import (
    LedgerEvent,
    LoggedIn,
    LoggedOut,
    LogoutReason,
    PinLockedOut,
    PinLockoutCleared,
    PinRejected,
    Roamed,
)
from hotdesk_ledger.projection import ProjectionRunner
from hotdesk_runtime.metrics import (
    PolledGauge,
    Poller,
    consumer_backlog,
    durable_lag,
    projection_lag,
)

from .projections import BusProjectionRunner, History

METER_NAME = "hotdesk.presence"
ROAMED = "roamed"
"""The logout reason counted for the user a ``Roamed`` displaced."""


class LedgerCounters:
    """Counts ledger events into the counters above."""

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter(METER_NAME)
        self.logins = meter.create_counter(
            "hotdesk_logins", description="Logins by kind: at an idle desk, or a roam"
        )
        self.logouts = meter.create_counter(
            "hotdesk_logouts", description="Logouts by reason (roamed: displaced by a roam)"
        )
        self.pin_failures = meter.create_counter(
            "hotdesk_pin_failures", description="Wrong PINs (PinRejected events)"
        )
        self.lockouts = meter.create_counter(
            "hotdesk_pin_lockouts", description="Users locked out after wrong PINs"
        )
        self.lockouts_cleared = meter.create_counter(
            "hotdesk_pin_lockouts_cleared", description="PIN lockouts an admin lifted"
        )
        # Every series exists from the start, so a rate over the first event is right.
        for kind in ("login", "roam"):
            self.logins.add(0, {"kind": kind})
        for reason in [*LogoutReason, ROAMED]:
            self.logouts.add(0, {"reason": str(reason)})
        for counter in (self.pin_failures, self.lockouts, self.lockouts_cleared):
            counter.add(0)

    def count(self, events: Sequence[LedgerEvent]) -> None:
        """Count one acknowledged batch of ledger events.

        Tallied per batch first: one instrument call per label value the batch has,
        not one per event (a catch-up hands over batches of a thousand)."""
        logins: Counter[str] = Counter()
        logouts: Counter[str] = Counter()
        other: Counter[type[LedgerEvent]] = Counter()
        for event in events:
            if isinstance(event, LoggedIn):
                logins["login"] += 1
            elif isinstance(event, Roamed):
                logins["roam"] += 1
                logouts[ROAMED] += 1
            elif isinstance(event, LoggedOut):
                logouts[str(event.reason)] += 1
            else:
                other[type(event)] += 1
        for kind, n in logins.items():
            self.logins.add(n, {"kind": kind})
        for reason, n in logouts.items():
            self.logouts.add(n, {"reason": reason})
        for kind_of_event, counter in (
            (PinRejected, self.pin_failures),
            (PinLockedOut, self.lockouts),
            (PinLockoutCleared, self.lockouts_cleared),
        ):
            if other[kind_of_event]:
                counter.add(other[kind_of_event])


def projection_name(runner: ProjectionRunner[Any] | BusProjectionRunner[Any, Any]) -> str:
    """The projection a runner runs (also its readiness part)."""
    if isinstance(runner, ProjectionRunner):
        return str(runner.projection.name)
    return str(runner.fold.name)


class PresenceMetrics:
    """Wires the counters to the history projection's runner and the lag of every
    projection to ``poller``; run ``poller.run(stopping)`` beside the runners."""

    def __init__(
        self,
        js: JetStreamContext,
        ledger_runners: Sequence[ProjectionRunner[Any]],
        bus_runners: Sequence[BusProjectionRunner[Any, Any]],
        *,
        counters: LedgerCounters | None = None,
        lag: PolledGauge | None = None,
        poller: Poller | None = None,
    ) -> None:
        self.counters = counters or LedgerCounters()
        self.poller = poller or Poller()
        lag = lag or projection_lag()
        counted = [r for r in ledger_runners if isinstance(r.projection, History)]
        if len(counted) != 1:
            raise ValueError("presence counts the ledger on exactly one history projection")
        counted[0].on_applied = self.counters.count
        for runner in ledger_runners:
            self.poller.watch(
                lag,
                durable_lag(js, runner.stream, runner.consumer),
                projection=projection_name(runner),
                stream=runner.stream,
            )
        for bus in bus_runners:
            for stream, _subject in bus.fold.sources:
                self.poller.watch(
                    lag,
                    consumer_backlog(js, stream, bus.durable(stream)),
                    projection=projection_name(bus),
                    stream=stream,
                )


__all__ = ["ROAMED", "LedgerCounters", "PresenceMetrics", "projection_name"]
