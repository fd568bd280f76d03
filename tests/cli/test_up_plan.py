"""What ``hotdesk up`` hands its children."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hotdesk_cli.runner import SERVICES
from hotdesk_cli.up import child_specs, service_config
from hotdesk_contracts.directory import Config, TelemetrySettings


def test_per_process_ports_are_spread_over_the_services() -> None:
    config = Config(telemetry=TelemetrySettings(health_port=9090, prometheus_port=9464))
    shifted = [service_config(config, i).telemetry for i in range(len(SERVICES))]
    assert [t.health_port for t in shifted] == [9090, 9091, 9092, 9093]
    assert [t.prometheus_port for t in shifted] == [9464, 9465, 9466, 9467]
    assert service_config(Config(), 3).telemetry.health_port == 0


def test_each_service_gets_its_own_private_resolved_config(tmp_path: Path) -> None:
    config = Config(telemetry=TelemetrySettings(health_port=9090))
    specs = child_specs(config, tmp_path, tmp_path / "hotdesk.toml")
    assert [s.name for s in specs] == list(SERVICES)
    for index, spec in enumerate(specs):
        assert list(spec.argv[3:5]) == ["run", spec.name]
        resolved = Path(spec.argv[spec.argv.index("--resolved-config") + 1])
        assert resolved.stat().st_mode & 0o777 == 0o600
        child = msgspec.json.decode(resolved.read_bytes(), type=Config)
        assert child.telemetry.health_port == 9090 + index
        assert spec.argv[-2:] == ["--config", str(tmp_path / "hotdesk.toml")]
