"""``python -m bench``: names pick benchmarks, options go to the one named, and what
it cannot do is refused instead of silently ignored."""

from __future__ import annotations

import types

import pytest

import bench.__main__ as runner


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    seen: list[tuple[str, list[str]]] = []

    def fake_import(name: str) -> types.ModuleType:
        module = types.ModuleType(name)
        bench_name = name.split(".")[1]

        def main(argv: list[str]) -> int:
            seen.append((bench_name, argv))
            return 0

        module.main = main  # type: ignore[attr-defined]
        return module

    monkeypatch.setattr(runner.importlib, "import_module", fake_import)
    return seen


def test_options_after_one_name_reach_that_benchmark(calls: list[tuple[str, list[str]]]) -> None:
    assert runner.main(["register", "--rates", "500", "1000"]) == 0
    assert calls == [("register", ["--rates", "500", "1000"])]


def test_no_name_runs_every_benchmark_without_options(calls: list[tuple[str, list[str]]]) -> None:
    assert runner.main([]) == 0
    assert [name for name, _ in calls] == runner.ALL
    assert all(argv == [] for _, argv in calls)


@pytest.mark.parametrize(
    "argv", [["ledger", "register", "--quick"], ["--quick"], ["nosuch"]], ids=repr
)
def test_what_cannot_be_done_is_refused(
    argv: list[str], calls: list[tuple[str, list[str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner.main(argv) == 2
    assert calls == []
    assert capsys.readouterr().err
