"""The ``hotdesk`` commands, through Typer's runner: outputs and exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hotdesk_cli.main import app
from hotdesk_runtime import pins
from hotdesk_runtime.config import verify_secret
from tests.support.natsserver import NatsServer, free_port

runner = CliRunner()

GOOD = """\
[[extensions]]
number = "100"
name = "Alice"

[[desks]]
name = "HD0001"
mac = "001565aabbcc"
sip_password = "s1"

[[trunks]]
name = "emergency"
uri = "sip:127.0.0.1:5099"
emergency = true
"""


@pytest.fixture(autouse=True)
def _no_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOTDESK_CONFIG", raising=False)
    monkeypatch.delenv("HOTDESK_TOKEN", raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hotdesk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check-config", "--config", str(write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_check_config_lists_every_problem_with_key_line_and_why(tmp_path: Path) -> None:
    text = GOOD.replace('mac = "001565aabbcc"', 'mac = "xyz"\nprot = 1')
    result = runner.invoke(app, ["check-config", "--config", str(write(tmp_path, text))])
    assert result.exit_code == 1
    assert "error desks[0].mac (line 7): expected 12 hex digits, no separators" in result.output
    assert "error desks[0].prot (line 8): unknown key 'prot'" in result.output
    assert "2 error(s)" in result.output


def test_check_config_prints_warnings_but_passes(tmp_path: Path) -> None:
    text = GOOD.replace("emergency = true", "emergency = false")
    result = runner.invoke(app, ["check-config", "--config", str(write(tmp_path, text))])
    assert result.exit_code == 0
    assert "warning trunks (line 10): NO EMERGENCY TRUNK CONFIGURED" in result.output
    assert "add a [[trunks]] entry with emergency = true" in result.output


def test_check_config_reads_the_path_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOTDESK_CONFIG", str(write(tmp_path, GOOD)))
    monkeypatch.setenv("HOTDESK_SIP__PORT", "many")
    result = runner.invoke(app, ["check-config"])
    assert result.exit_code == 1
    assert "sip.port (environment variable HOTDESK_SIP__PORT)" in result.output


def test_check_config_on_a_missing_file_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check-config", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 1
    assert "not found" in result.output


def test_check_config_without_a_file_checks_the_demo() -> None:
    result = runner.invoke(app, ["check-config"])
    assert result.exit_code == 0, result.output
    assert "demo" in result.output


def test_hash_pin_prints_an_argon2_hash_of_the_pin() -> None:
    result = runner.invoke(app, ["hash-pin"], input="2468\n2468\n")
    assert result.exit_code == 0, result.output
    [encoded] = re.findall(r"\$argon2id\$\S+", result.output)
    assert verify_secret(encoded, "2468")
    assert "2468" not in result.output.replace(encoded, "")


def test_hash_pin_peppers_the_pin_with_the_configured_pepper(tmp_path: Path) -> None:
    pepper = "cli-test-pepper-0123456789"
    path = tmp_path / "hotdesk.toml"
    path.write_text(f'[pins]\npepper = "{pepper}"\n')
    result = runner.invoke(app, ["hash-pin", "--config", str(path)], input="2468\n2468\n")
    assert result.exit_code == 0, result.output
    [encoded] = re.findall(r"peppered:\S+", result.output)
    assert pins.verify_pin_hash(encoded, "2468", pepper)
    assert pepper not in result.output
    assert "no pins.pepper" not in result.output


def test_hash_pin_takes_the_pepper_from_the_environment_and_warns_without_one() -> None:
    pepper = "env-test-pepper-0123456789"
    result = runner.invoke(
        app, ["hash-pin"], input="2468\n2468\n", env={"HOTDESK_PINS__PEPPER": pepper}
    )
    [encoded] = re.findall(r"peppered:\S+", result.output)
    assert pins.verify_pin_hash(encoded, "2468", pepper)
    plain = runner.invoke(app, ["hash-pin"], input="2468\n2468\n", env={"HOTDESK_PINS__PEPPER": ""})
    assert "warning: no pins.pepper set" in plain.output


def test_hash_pin_refuses_a_short_pepper() -> None:
    result = runner.invoke(
        app, ["hash-pin"], input="2468\n2468\n", env={"HOTDESK_PINS__PEPPER": "short"}
    )
    assert result.exit_code == 1
    assert "at least 16" in result.output


def test_hash_pin_refuses_a_pin_that_is_not_digits() -> None:
    result = runner.invoke(app, ["hash-pin"], input="abcd\nabcd\n")
    assert result.exit_code == 1
    assert "4 to 12 digits" in result.output


def test_run_refuses_an_unknown_service() -> None:
    result = runner.invoke(app, ["run", "fax-gateway"])
    assert result.exit_code == 1
    assert "unknown service 'fax-gateway'" in result.output


def test_desks_needs_a_token() -> None:
    result = runner.invoke(app, ["desks"])
    assert result.exit_code == 1
    assert "--token" in result.output


def test_desks_says_when_the_admin_api_is_not_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTDESK_ADMIN__PORT", str(free_port()))
    result = runner.invoke(app, ["logout", "HD0001", "--token", "t"])
    assert result.exit_code == 2
    assert "not reachable" in result.output


def test_rebuild_of_an_unknown_projection_is_not_available() -> None:
    result = runner.invoke(app, ["rebuild", "no-such-projection"])
    assert result.exit_code == 2
    assert "not available" in result.output
    assert "desk-occupancy" in result.output


def test_rebuild_replays_the_ledger_into_a_projection(
    own_nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOTDESK_NATS__URL", own_nats_server.url)
    result = runner.invoke(app, ["rebuild", "desk-occupancy"])
    assert result.exit_code == 0, result.output
    assert "desk-occupancy: 0 event(s) replayed" in result.output


def test_prompts_update_then_status_shows_every_prompt_installed(
    own_nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOTDESK_NATS__URL", own_nats_server.url)
    update = runner.invoke(app, ["prompts", "update"])
    assert update.exit_code == 0, update.output
    assert re.search(r"[1-9]\d* prompt\(s\) installed", update.output)
    status = runner.invoke(app, ["prompts", "status"])
    assert status.exit_code == 0, status.output
    assert "ok" in status.output
    assert "missing" not in status.output


def test_commands_needing_nats_fail_clearly_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTDESK_NATS__URL", f"nats://127.0.0.1:{free_port()}")
    result = runner.invoke(app, ["reload"])
    assert result.exit_code == 2
    assert "cannot reach NATS" in result.output


def test_up_fails_clearly_when_the_embedded_port_is_taken(
    tmp_path: Path, own_nats_server: NatsServer
) -> None:
    text = GOOD + f"\n[nats]\nembedded_port = {own_nats_server.port}\n"
    result = runner.invoke(
        app, ["up", "--config", str(write(tmp_path, text)), "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 1
    assert "is in use" in result.output
