"""The logins benchmark's arithmetic, and the edge histogram it reads from /metrics."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from bench.logins.figures import (
    bucket_quantile,
    buckets_delta,
    completion_rate,
    digit_to_ledger_ms,
    parse_histogram,
    quantile,
)
from hotdesk_sip_edge.media.metrics import Histogram, HistogramCollector

NAME = "test_jitter_seconds"


def exposition(histogram: Histogram) -> str:
    registry = CollectorRegistry()
    registry.register(HistogramCollector(NAME, "test", histogram))
    return generate_latest(registry).decode()


def test_edge_histogram_is_served_as_cumulative_prometheus_buckets() -> None:
    histogram = Histogram([0.001, 0.002, 0.005])
    for value in (0.0005, 0.0015, 0.0015, 0.004, 0.5):
        histogram.observe(value)
    text = exposition(histogram)
    assert parse_histogram(text, NAME) == [
        (0.001, 1.0),
        (0.002, 3.0),
        (0.005, 4.0),
        (math.inf, 5.0),
    ]
    assert f"{NAME}_count 5.0" in text


def test_a_step_sees_only_what_was_observed_between_its_scrapes() -> None:
    histogram = Histogram([0.001, 0.002, 0.005])
    histogram.observe(0.004)
    before = parse_histogram(exposition(histogram), NAME)
    for _ in range(99):
        histogram.observe(0.0005)
    histogram.observe(0.0015)
    step = buckets_delta(parse_histogram(exposition(histogram), NAME), before)
    assert step[-1] == (math.inf, 100.0)
    assert bucket_quantile(step, 0.99) == 0.001
    assert bucket_quantile(step, 1.0) == 0.002


def test_quantiles_of_nothing_are_nan() -> None:
    assert math.isnan(bucket_quantile([], 0.99))
    assert math.isnan(bucket_quantile([(0.001, 0.0), (math.inf, 0.0)], 0.99))
    assert math.isnan(quantile([], 0.5))


def test_nearest_rank_quantile() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert quantile(samples, 0.5) == 50.0
    assert quantile(samples, 0.99) == 99.0
    assert quantile(list(reversed(samples)), 1.0) == 100.0


def test_latency_is_matched_by_call_and_leaves_out_unmatched_calls() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    digits = {"a": t0, "b": t0 + timedelta(seconds=1), "lost": t0}
    ledger = {"a": t0 + timedelta(milliseconds=40), "b": t0 + timedelta(seconds=1.25)}
    assert sorted(digit_to_ledger_ms(digits, ledger)) == [40.0, 250.0]


def test_completion_rate_counts_intervals_between_completions() -> None:
    assert completion_rate([10.0, 10.5, 11.0, 11.5, 12.0]) == 2.0
    assert completion_rate([3.0]) == 0.0
