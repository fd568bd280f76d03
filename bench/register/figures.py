"""The benchmark's figures, computed from what SIPp and ``/proc`` reported (pure).

A rate step *holds* when fewer than 0.1% of its registrations fail and the registrar
completes them at >= 90% of the offered rate: a registrar that falls behind on UDP
first queues (delays grow, SIPp retransmits) and only later drops, so failures alone
would credit it with rates it does not keep up with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .sipp import StepRun

MAX_FAILURE_RATIO = 0.001
MIN_ACHIEVED_RATIO = 0.9
GENERATOR_BOUND = 0.9


@dataclass(frozen=True)
class Step:
    """One rate step against one registrar."""

    offered_rate: int
    """Registrations per second SIPp was asked to start."""
    calls: int
    successful: int
    failed: int
    retransmissions: int
    achieved_rate: float
    """Successful registrations per second, up to the last one's completion."""
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_register: float
    """The registrar's CPU time (user + system, all its processes) per registration."""
    helper_cpu_us_per_register: float
    generator_cpu_seconds: float
    wall_seconds: float
    load_average: float = 0.0
    """The machine's 1-minute load average as the step ended: the figures come from a
    machine shared with other work, and a busy moment shows here."""

    @property
    def failure_ratio(self) -> float:
        return self.failed / self.calls if self.calls else 1.0

    @property
    def holds(self) -> bool:
        return (
            self.calls > 0
            and self.failure_ratio < MAX_FAILURE_RATIO
            and self.achieved_rate >= MIN_ACHIEVED_RATIO * self.offered_rate
        )

    @property
    def generator_bound(self) -> bool:
        """SIPp itself was busy nearly all the step: the rate says more about it."""
        return self.generator_cpu_seconds >= GENERATOR_BOUND * self.wall_seconds

    def as_dict(self) -> dict[str, Any]:
        """For JSON: a figure that could not be measured (no sample) is null."""
        out = {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in asdict(self).items()
        }
        out["failure_ratio"] = self.failure_ratio
        out["holds"] = self.holds
        out["generator_bound"] = self.generator_bound
        return out


def step_from_run(
    rate: int,
    run: StepRun,
    cpu_seconds: float,
    helper_cpu_seconds: float,
    load_average: float = 0.0,
) -> Step:
    """Combine SIPp's view of a step with the CPU the registrar spent meanwhile."""
    counts, delays = run.counts, run.delays
    span = delays.last_completion_ms / 1000
    done = counts.successful
    return Step(
        offered_rate=rate,
        calls=counts.created,
        successful=done,
        failed=counts.failed,
        retransmissions=counts.retransmissions,
        achieved_rate=done / span if span > 0 else 0.0,
        p50_ms=delays.quantile(0.5),
        p99_ms=delays.quantile(0.99),
        max_ms=delays.quantile(1.0),
        cpu_us_per_register=1e6 * cpu_seconds / done if done else math.nan,
        helper_cpu_us_per_register=1e6 * helper_cpu_seconds / done if done else math.nan,
        generator_cpu_seconds=run.generator_cpu_seconds,
        wall_seconds=run.wall_seconds,
        load_average=load_average,
    )


@dataclass(frozen=True)
class Summary:
    """A registrar's headline figures over its rate steps."""

    max_rate: int | None
    """The highest offered rate that held (None if none did)."""
    achieved_rate: float | None
    p99_ms: float | None
    """p99 registration delay at that rate."""
    cpu_us_per_register: float | None
    """CPU per registration over every step that held."""
    registers_per_cpu_second: float | None
    """1 / CPU per registration: what one fully busy core would sustain."""
    helper_cpu_us_per_register: float | None
    """CPU of the processes reported apart (the edge's nats-server), same steps."""
    saturated: bool
    """False when even the highest rate tried held (the figure is a lower bound)."""


def summarise(steps: Sequence[Step]) -> Summary:
    held = [s for s in steps if s.holds]
    if not held:
        return Summary(None, None, None, None, None, None, saturated=bool(steps))
    best = max(held, key=lambda s: s.offered_rate)
    done = sum(s.successful for s in held)
    cpu = sum(
        s.cpu_us_per_register * s.successful for s in held if not math.isnan(s.cpu_us_per_register)
    )
    per_register = cpu / done if done and cpu > 0 else None
    helper = sum(
        s.helper_cpu_us_per_register * s.successful
        for s in held
        if not math.isnan(s.helper_cpu_us_per_register)
    )
    return Summary(
        max_rate=best.offered_rate,
        achieved_rate=best.achieved_rate,
        p99_ms=best.p99_ms,
        cpu_us_per_register=per_register,
        registers_per_cpu_second=1e6 / per_register if per_register else None,
        helper_cpu_us_per_register=helper / done if done else None,
        saturated=any(not s.holds for s in steps),
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator
