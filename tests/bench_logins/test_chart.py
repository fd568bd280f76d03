"""The logins chart renders from the JSON the benchmark writes, failed runs included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.logins.chart import chart


def step(rate: float, completed: float, held: bool, jitter: float | None) -> dict[str, Any]:
    return {
        "offered_per_second": rate,
        "completed_per_second": completed,
        "held": held,
        "latency_p50_ms": 40.0,
        "latency_p99_ms": None if not held else 120.0,
        "jitter_p99_ms": jitter,
        "cpu_ms_per_login": {"edge": 8.0, "ivr": 5.0, "nats_server": 2.0, "sipp": 2.5},
    }


def test_chart_is_written_for_a_held_and_an_unheld_profile(tmp_path: Path) -> None:
    results = {
        "machine": {"cpus": 2},
        "targets": {"logins_per_second": 50.0, "rtp_send_jitter_p99_ms": 5.0},
        "reference": {"logins_per_second_per_node": 1.25},
        "profiles": {
            "cheap": {
                "argon2_cpu_ms_per_check": 25.0,
                "steps": [step(5, 5.0, True, 3.0), step(10, 6.0, False, None)],
                "final": step(5, 4.9, True, 4.0),
            },
            "costly": {
                "argon2_cpu_ms_per_check": 200.0,
                "steps": [step(1, 0.5, False, None)],
                "final": None,
            },
        },
    }
    out = tmp_path / "logins.png"
    chart(results, out)
    assert out.read_bytes().startswith(b"\x89PNG")
