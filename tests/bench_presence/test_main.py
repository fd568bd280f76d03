"""The presence benchmark's fan-out-only run keeps the last full run's rebuild figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.presence.__main__ import earlier_rebuild


def test_fanout_only_keeps_the_rebuild_figures_with_the_date_of_their_run(
    tmp_path: Path,
) -> None:
    results = tmp_path / "presence.json"
    rebuild = {"raw_ordered_consumer": {"per_s": 1.0}}
    results.write_text(json.dumps({"when": "2026-01-02T03:04:05+00:00", "rebuild": rebuild}))
    kept = earlier_rebuild(results)
    assert kept == {**rebuild, "measured_in_run_of": "2026-01-02T03:04:05+00:00"}
    # Kept again by a later fan-out-only run: still the date of the run that measured it.
    results.write_text(json.dumps({"when": "2026-02-01T00:00:00+00:00", "rebuild": kept}))
    assert earlier_rebuild(results)["measured_in_run_of"] == "2026-01-02T03:04:05+00:00"


def test_fanout_only_without_an_earlier_full_run_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="run the whole benchmark once"):
        earlier_rebuild(tmp_path / "missing.json")
