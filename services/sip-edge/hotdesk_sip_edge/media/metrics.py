"""Measurements the media path keeps for benchmarks and ``/metrics``.

Importing this module registers :data:`RTP_SEND_JITTER` with prometheus_client's default
registry, which the health port's ``/metrics`` serves.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily, Metric


class Histogram:
    """A fixed-bucket histogram of seconds (cheap enough to observe every RTP packet)."""

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = sorted(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value
        self.maximum = max(self.maximum, value)

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (0-1); NaN when empty."""
        if not self.count:
            return math.nan
        rank = q * self.count
        seen = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            seen += n
            if seen >= rank:
                return bound
        return self.maximum

    def reset(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)
        self.count, self.total, self.maximum = 0, 0.0, 0.0


RTP_SEND_JITTER = Histogram([i / 10000 for i in range(0, 200)] + [i / 1000 for i in range(20, 201)])
"""How late each RTP packet left against its 20 ms schedule, in seconds (0.1 ms steps
up to 20 ms, then 1 ms steps up to 200 ms), over every call of this process."""


class HistogramCollector:
    """Renders a :class:`Histogram` for ``/metrics`` as a Prometheus histogram (cumulative
    ``_bucket{le=…}`` counts, ``_sum``, ``_count``) at each scrape, so the media path's
    per-packet ``observe`` stays a bisect and two additions."""

    def __init__(self, name: str, documentation: str, histogram: Histogram) -> None:
        self.name = name
        self.documentation = documentation
        self.histogram = histogram

    def collect(self) -> Iterator[Metric]:
        h = self.histogram
        buckets: list[tuple[str, float]] = []
        seen = 0
        for bound, n in zip(h.bounds, h.counts, strict=False):
            seen += n
            buckets.append((repr(bound), float(seen)))
        buckets.append(("+Inf", float(h.count)))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=buckets, sum_value=h.total
        )

    def describe(self) -> list[Metric]:
        # Nothing up front: the registry then takes no names for its duplicate check,
        # and a second import of this module cannot fail on registration.
        return []


REGISTRY.register(
    HistogramCollector(
        "hotdesk_rtp_send_jitter_seconds",
        "How late each RTP packet the edge sent left against its 20 ms schedule.",
        RTP_SEND_JITTER,
    )
)
