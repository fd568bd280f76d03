"""The REGISTER benchmark's parsing and figures, on SIPp output saved from real runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.register.figures import Step, step_from_run, summarise
from bench.register.sipp import (
    Delays,
    SippCounts,
    SippError,
    StepRun,
    injection_file,
    parse_rtt,
    parse_stat,
    rtt_dump_every,
)

DATA = Path(__file__).parent / "data"


def step(rate: int, *, calls: int, failed: int = 0, achieved: float | None = None) -> Step:
    return Step(
        offered_rate=rate,
        calls=calls,
        successful=calls - failed,
        failed=failed,
        retransmissions=0,
        achieved_rate=float(rate) if achieved is None else achieved,
        p50_ms=0.0,
        p99_ms=1.0,
        max_ms=2.0,
        cpu_us_per_register=50.0,
        helper_cpu_us_per_register=0.0,
        generator_cpu_seconds=0.1,
        wall_seconds=1.0,
    )


def test_stat_file_gives_the_cumulative_counts_of_its_last_line() -> None:
    counts = parse_stat((DATA / "stat-all-registered.csv").read_text())
    assert counts == SippCounts(
        created=50,
        successful=50,
        failed=0,
        retransmissions=0,
        failed_timeout=0,
        failed_unexpected=0,
    )


def test_a_second_401_counts_as_a_failed_registration() -> None:
    counts = parse_stat((DATA / "stat-wrong-password.csv").read_text())
    assert (counts.created, counts.successful, counts.failed) == (10, 0, 10)
    assert counts.failed_unexpected == 10


def test_stat_file_without_a_data_line_is_an_error() -> None:
    header = (DATA / "stat-all-registered.csv").read_text().splitlines()[0]
    with pytest.raises(SippError, match="no data line"):
        parse_stat(header + "\n")


def test_rtt_file_gives_every_delay_and_the_last_completion() -> None:
    delays = parse_rtt((DATA / "rtt.csv").read_text())
    assert len(delays.samples) == 50
    assert delays.last_completion_ms == pytest.approx(512.001)
    assert delays.samples[-1] == 12


def test_rtt_lines_cut_short_are_ignored() -> None:
    delays = parse_rtt("Date_ms;response_time_ms;rtd_no\n1.0;3;1\n2.0;7;1\n3.0;")
    assert delays.samples == [3, 7]
    assert delays.last_completion_ms == 2.0


def test_p99_is_the_nearest_rank_of_the_sorted_delays() -> None:
    delays = Delays(samples=list(range(1, 201)), last_completion_ms=1.0)
    assert delays.quantile(0.99) == 198.0
    assert delays.quantile(0.5) == 100.0
    assert delays.quantile(1.0) == 200.0
    assert math.isnan(Delays([], 0.0).quantile(0.99))


def test_small_runs_dump_every_delay_so_none_is_lost() -> None:
    assert rtt_dump_every(50) == 1
    assert rtt_dump_every(40_000) == 100


def test_injection_file_carries_each_users_credentials() -> None:
    text = injection_file([("HD0001", "secret1"), ("HD0002", "secret2")])
    assert text.splitlines() == [
        "SEQUENTIAL",
        "HD0001;[authentication username=HD0001 password=secret1]",
        "HD0002;[authentication username=HD0002 password=secret2]",
    ]


@pytest.mark.parametrize("password", ["a;b", "a b", "a]b", "a=b"])
def test_injection_file_refuses_passwords_sipp_would_misread(password: str) -> None:
    with pytest.raises(ValueError, match="SIPp CSV"):
        injection_file([("HD0001", password)])


def test_a_step_holds_below_one_failure_in_a_thousand() -> None:
    assert step(1000, calls=10_000, failed=9).holds
    assert not step(1000, calls=10_000, failed=10).holds


def test_a_step_the_registrar_falls_behind_on_does_not_hold() -> None:
    assert step(1000, calls=4000, achieved=900.0).holds
    assert not step(1000, calls=4000, achieved=899.0).holds


def test_cpu_per_register_divides_by_the_successful_registrations() -> None:
    run = StepRun(
        counts=SippCounts(1000, 990, 10, 0, 10, 0),
        delays=Delays([1] * 990, last_completion_ms=2000.0),
        wall_seconds=2.1,
        generator_cpu_seconds=0.2,
    )
    figures = step_from_run(500, run, cpu_seconds=0.099, helper_cpu_seconds=0.0198)
    assert figures.cpu_us_per_register == pytest.approx(100.0)
    assert figures.helper_cpu_us_per_register == pytest.approx(20.0)
    assert figures.achieved_rate == pytest.approx(495.0)


def test_summary_names_the_highest_rate_that_held() -> None:
    steps = [step(250, calls=1000), step(500, calls=2000), step(1000, calls=4000, failed=400)]
    summary = summarise(steps)
    assert summary.max_rate == 500
    assert summary.saturated
    assert summary.cpu_us_per_register == pytest.approx(50.0)
    assert summary.registers_per_cpu_second == pytest.approx(20_000.0)


def test_a_registrar_that_never_fell_behind_is_not_called_saturated() -> None:
    summary = summarise([step(250, calls=1000), step(500, calls=2000)])
    assert summary.max_rate == 500
    assert not summary.saturated


def test_no_step_held_means_no_rate() -> None:
    summary = summarise([step(250, calls=1000, failed=1000, achieved=0.0)])
    assert summary.max_rate is None
    assert summary.saturated


def test_a_figure_that_could_not_be_measured_is_null_in_the_results() -> None:
    run = StepRun(
        counts=SippCounts(10, 0, 10, 0, 10, 0),
        delays=Delays([], last_completion_ms=0.0),
        wall_seconds=1.0,
        generator_cpu_seconds=0.1,
    )
    figures = step_from_run(100, run, cpu_seconds=0.01, helper_cpu_seconds=0.0).as_dict()
    assert figures["p99_ms"] is None
    assert figures["cpu_us_per_register"] is None
    assert figures["holds"] is False
