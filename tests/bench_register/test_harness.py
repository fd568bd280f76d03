"""The REGISTER benchmark harness against real registrars: Kamailio from Debian, the
hotdesk edge, and SIPp as the load generator; every address 127.0.0.1."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from bench.register.__main__ import main
from bench.register.sipp import injection_file, run_step
from bench.register.targets import (
    ExternalTarget,
    HotdeskEdgeTarget,
    KamailioTarget,
    TargetUnavailable,
    check_registers,
    cpu_seconds,
    edge_config,
    free_port,
    users,
)
from hotdesk_runtime.config import check_file


def write_csv(path: Path, entries: list[tuple[str, str]]) -> Path:
    path.write_text(injection_file(entries))
    return path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kamailio_registers_every_user_with_its_password(tmp_path: Path) -> None:
    people = users(20)
    csv = write_csv(tmp_path / "users.csv", people)
    with KamailioTarget().running(tmp_path / "k", people) as registrar:
        run = run_step(
            tmp_path / "step", registrar.host, registrar.port, 100, 40, csv, max_seconds=10
        )
        pids = registrar.pids()
        assert cpu_seconds(pids) >= 0.0
    assert (run.counts.successful, run.counts.failed) == (40, 0)
    assert len(run.delays.samples) == 40
    # main process, one UDP worker and Kamailio's helper processes
    assert len(pids) >= 3
    assert not any(alive(pid) for pid in pids)


def test_kamailio_refuses_a_wrong_password(tmp_path: Path) -> None:
    people = users(5)
    csv = write_csv(tmp_path / "bad.csv", [(name, "not-it") for name, _ in people])
    with KamailioTarget().running(tmp_path / "k", people) as registrar:
        run = run_step(
            tmp_path / "step", registrar.host, registrar.port, 50, 5, csv, max_seconds=10
        )
    assert (run.counts.successful, run.counts.failed) == (0, 5)


def test_kamailio_with_default_children_runs_more_workers(tmp_path: Path) -> None:
    people = users(5)
    with (
        KamailioTarget(children=1).running(tmp_path / "one", people) as one,
        KamailioTarget(children=None).running(tmp_path / "default", people) as default,
    ):
        assert len(default.pids()) > len(one.pids())


def test_a_registrar_that_does_not_answer_is_unavailable(tmp_path: Path) -> None:
    target = ExternalTarget("nobody", "127.0.0.1", free_port())
    with pytest.raises(TargetUnavailable, match="nothing answers"), target.running(tmp_path, []):
        pass


def test_only_registrars_on_this_machine_can_be_loaded() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ExternalTarget("elsewhere", "192.0.2.1", 5060)


def test_edge_config_is_a_valid_hotdesk_config_with_every_user_as_a_desk(
    tmp_path: Path,
) -> None:
    people = users(3)
    path = tmp_path / "hotdesk.toml"
    path.write_text(
        edge_config(people, nats_url="nats://127.0.0.1:4222", sip_port=5070, health_port=8099)
    )
    config, problems = check_file(path, env={})
    assert config is not None
    assert [p for p in problems if p.severity == "error"] == []
    assert [(d.name, d.sip_password) for d in config.desks] == people
    assert (config.sip.listen, config.sip.port) == ("127.0.0.1", 5070)
    assert tomllib.loads(path.read_text())["nats"]["url"] == "nats://127.0.0.1:4222"


def test_edge_target_registers_the_users_through_the_real_edge(tmp_path: Path) -> None:
    people = users(5)
    csv = write_csv(tmp_path / "users.csv", people)
    with HotdeskEdgeTarget().running(tmp_path / "edge", people) as registrar:
        check_registers(registrar, tmp_path, csv, timeout=20)
        pids, helpers = registrar.pids(), registrar.helper_pids()
        assert pids
        assert helpers
    assert not any(alive(pid) for pid in pids + helpers)


def test_benchmark_writes_kamailio_figures_and_records_a_registrar_that_is_not_there(
    tmp_path: Path,
) -> None:
    code = main(
        [
            "--targets",
            "kamailio",
            "--registrar",
            f"absent=127.0.0.1:{free_port()}",
            "--users",
            "50",
            "--rates",
            "100,200",
            "--step-seconds",
            "1",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "register.json").read_text())
    kamailio = results["targets"]["kamailio"]
    assert kamailio["available"]
    assert [s["offered_rate"] for s in kamailio["steps"]] == [100, 200]
    assert all(s["holds"] and s["failed"] == 0 for s in kamailio["steps"])
    assert kamailio["summary"]["max_rate"] == 200
    assert results["targets"]["absent"] == {
        "available": False,
        "description": "a registrar started outside the benchmark",
        "reason": results["targets"]["absent"]["reason"],
    }
    assert "nothing answers" in results["targets"]["absent"]["reason"]
    assert results["edge"] == "not available: not run"
    assert results["ratio_edge_vs_kamailio"]["note"] == "hotdesk-edge: not available"
    assert (tmp_path / "register.png").read_bytes().startswith(b"\x89PNG")
