"""The benchmark's arithmetic, kept pure: Prometheus histogram text, quantiles, and
matching each call's last PIN digit to its ledger event."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

Buckets = list[tuple[float, float]]
"""A Prometheus histogram: (upper bound ``le``, cumulative count), ascending."""


def parse_histogram(text: str, name: str) -> Buckets:
    """The ``<name>_bucket`` lines of a Prometheus text exposition."""
    prefix = f'{name}_bucket{{le="'
    buckets: Buckets = []
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        bound, _, rest = line[len(prefix) :].partition('"}')
        try:
            buckets.append((float(bound), float(rest.split()[0])))
        except (ValueError, IndexError) as exc:
            raise ValueError(f"unreadable histogram line: {line!r}") from exc
    buckets.sort()
    return buckets


def buckets_delta(after: Buckets, before: Buckets) -> Buckets:
    """What was observed between two scrapes of the same histogram."""
    if not before:
        return list(after)
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def bucket_quantile(buckets: Buckets, q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` (NaN when empty): an upper
    estimate, as fine as the buckets (0.1 ms below 20 ms for the RTP jitter)."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= rank:
            return bound
    return buckets[-1][0]


def quantile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (``q`` in (0, 1]); NaN without samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def digit_to_ledger_ms(
    last_digit_at: Mapping[str, datetime], ledger_at: Mapping[str, datetime]
) -> list[float]:
    """Per call (by SIP Call-ID), milliseconds from the edge receiving the last PIN
    digit to the IVR's ledger event; calls missing either side are left out."""
    return [
        (ledger_at[call] - at).total_seconds() * 1000.0
        for call, at in last_digit_at.items()
        if call in ledger_at
    ]


def completion_rate(arrivals: Sequence[float]) -> float:
    """Logins completed per second between the first and the last completion (seconds
    on any monotonic clock); 0 with fewer than two."""
    if len(arrivals) < 2:
        return 0.0
    span = max(arrivals) - min(arrivals)
    return (len(arrivals) - 1) / span if span > 0 else math.inf
