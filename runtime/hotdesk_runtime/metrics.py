"""Gauges that take a NATS round trip to read, and the projection lag every service shares.

An OpenTelemetry observable gauge is read inside the exporter's collection, which may
not wait for NATS. A service's :class:`Poller` runs its probes (async functions asking
JetStream) every ``POLL_SECONDS`` in the service's loop; each :class:`PolledGauge` keeps
the last values and the collection reads those. A probe that fails (NATS away) drops
its series until it answers again, so a scrape never shows a stale number as current.

:func:`projection_lag` is ``hotdesk_projection_lag{projection, stream}``: how far a
projection or follower is behind its stream, in stream messages, 0 when it has applied
everything there is for it. The probes below measure it for the three kinds of readers
the services run: a durable consumer of the whole stream (the stream's last sequence
minus the consumer's ack floor), a filtered durable consumer (messages pending plus
unacknowledged), an in-process follower (the last sequence on its subjects minus the
last it applied; messages of other subjects in between count too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger(__name__)

METER_NAME = "hotdesk.runtime"
POLL_SECONDS = 5.0
"""How often the probes run: a polled value is at most this old."""

Probe = Callable[[], Awaitable[float]]
"""Reads one value (over NATS)."""

Attributes = tuple[tuple[str, str], ...]


class PolledGauge:
    """An observable gauge reporting the values a :class:`Poller` last read for it."""

    def __init__(self, name: str, description: str, meter: metrics.Meter | None = None) -> None:
        self.name = name
        self._values: dict[Attributes, float] = {}
        meter = meter or metrics.get_meter(METER_NAME)
        meter.create_observable_gauge(name, callbacks=[self._observe], description=description)

    def value(self, **attributes: str) -> float | None:
        """The value last read for ``attributes`` (``None``: none, or its probe failed)."""
        return self._values.get(_key(attributes))

    def _set(self, key: Attributes, value: float | None) -> None:
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(key)) for key, value in list(self._values.items())]


def _key(attributes: dict[str, str]) -> Attributes:
    return tuple(sorted(attributes.items()))


class Poller:
    """The polled series of one service: their probes run every ``every`` seconds
    while :meth:`run` runs, and the series are dropped when it returns."""

    def __init__(self, every: float = POLL_SECONDS) -> None:
        self.every = every
        self._series: list[tuple[PolledGauge, Attributes, Probe]] = []

    def watch(self, gauge: PolledGauge, probe: Probe, **attributes: str) -> None:
        """Report what ``probe`` returns as ``gauge``'s series with ``attributes``."""
        self._series.append((gauge, _key(attributes), probe))

    async def poll(self) -> None:
        """Run every probe once."""
        for gauge, key, probe in self._series:
            try:
                value: float | None = await asyncio.wait_for(probe(), max(self.every, 1.0))
            except Exception as exc:
                value = None
                log.debug(
                    "gauge probe failed",
                    extra={"metric": gauge.name, "series": dict(key), "error": repr(exc)},
                )
            gauge._set(key, value)

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll now and every ``every`` seconds until ``stopping``; then drop the
        series, which no longer describe a running service."""
        try:
            while not stopping.is_set():
                await self.poll()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.every)
        finally:
            for gauge, key, _ in self._series:
                gauge._set(key, None)


_lag: PolledGauge | None = None


def projection_lag() -> PolledGauge:
    """``hotdesk_projection_lag``, created once per process on the global meter."""
    global _lag
    if _lag is None:
        _lag = PolledGauge(
            "hotdesk_projection_lag",
            "How far a projection or follower is behind its stream, in stream messages: "
            "the last sequence it reads up to minus the last it applied (0: caught up)",
        )
    return _lag


async def last_sequence(js: JetStreamContext, stream: str, subject: str | None = None) -> int:
    """The stream's last sequence, or the last one on ``subject`` (wildcards allowed);
    0 when there is none."""
    if subject is None:
        return int((await js.stream_info(stream)).state.last_seq)
    try:
        last = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return 0
    return int(last.seq or 0)


def follower_lag(
    js: JetStreamContext, stream: str, subject: str, applied: Callable[[], int]
) -> Probe:
    """The lag of an in-process follower reading ``subject`` (an ordered consumer): the
    last sequence on ``subject`` minus ``applied()``, the last sequence it applied."""

    async def probe() -> float:
        last = await last_sequence(js, stream, subject)
        return float(max(0, last - applied()))

    return probe


def durable_lag(js: JetStreamContext, stream: str, consumer: str) -> Probe:
    """The lag of a durable consumer that reads the whole stream and acknowledges in
    order (a ledger projection): the stream's last sequence minus its ack floor."""

    async def probe() -> float:
        last = await last_sequence(js, stream)
        info = await js.consumer_info(stream, consumer)
        floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
        return float(max(0, last - floor))

    return probe


def consumer_backlog(js: JetStreamContext, stream: str, consumer: str) -> Probe:
    """The lag of a filtered durable consumer: messages on its filter not yet delivered
    plus those delivered and not yet acknowledged."""

    async def probe() -> float:
        info = await js.consumer_info(stream, consumer)
        return float(int(info.num_pending or 0) + int(info.num_ack_pending or 0))

    return probe


__all__ = [
    "POLL_SECONDS",
    "PolledGauge",
    "Poller",
    "Probe",
    "consumer_backlog",
    "durable_lag",
    "follower_lag",
    "last_sequence",
    "projection_lag",
]
