"""Deployment files validate: compose against the Compose specification schema, every
kustomize overlay rendered by kubectl and checked strictly against the Kubernetes schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = subprocess.run(
        [
            BIN / "check-jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            ROOT / "docker-compose.yml",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_a_three_node_nats_cluster_and_two_edges() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {
        "nats-1",
        "nats-2",
        "nats-3",
        "sip-edge-a",
        "sip-edge-b",
        "ivr",
        "provisioner",
        "presence",
        "otel-collector",
        "jaeger",
    } <= set(services)
    for edge in ("sip-edge-a", "sip-edge-b"):
        assert services[edge]["command"][:2] == ["run", "sip-edge"]


def _render(overlay: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [BIN / "kubectl", "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_renders_and_validates_strictly(overlay: str, tmp_path: Path) -> None:
    docs = _render(overlay)
    assert docs, "the overlay rendered nothing"
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    result = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "--quiet", out],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prod_is_highly_available() -> None:
    docs = _render("prod")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"sip-edge", "ivr", "provisioner", "presence"}
    for name, dep in deployments.items():
        assert dep["spec"]["replicas"] >= 2, name
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]
    pdbs = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert pdbs == {"nats", "sip-edge", "ivr", "provisioner", "presence"}
    nats = next(d for d in docs if d["kind"] == "StatefulSet")
    assert nats["spec"]["replicas"] == 3
    env = next(
        d for d in docs if d["kind"] == "ConfigMap" and "hotdesk-env" in d["metadata"]["name"]
    )
    assert env["data"]["HOTDESK_NATS__REPLICAS"] == "3"
    sip = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "sip")
    assert sip["spec"]["externalTrafficPolicy"] == "Local"
    assert {p["protocol"] for p in sip["spec"]["ports"]} == {"UDP", "TCP"}
    assert any(d["kind"] == "NetworkPolicy" for d in docs)


def test_dev_runs_one_of_everything() -> None:
    docs = _render("dev")
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            assert d["spec"]["replicas"] == 1, d["metadata"]["name"]
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
