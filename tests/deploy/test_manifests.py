"""Deployment files validate: compose against the Compose specification schema, every
kustomize overlay rendered by kubectl and checked strictly against the Kubernetes schemas.
Beyond the schemas: each service's configuration as the manifests give it is loaded and
checked by hotdesk's own config loader, the edges' IVR media (RTP) is reachable at the
address they advertise, and the NetworkPolicies allow exactly the traffic the design
needs under a default deny both ways."""

from __future__ import annotations

import base64
import functools
import ipaddress
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from hotdesk_contracts.directory import Config
from hotdesk_runtime.config import check_file
from hotdesk_sip_edge.media.session import check_media_address

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OVERLAYS = ["dev", "prod"]
SERVICES = ("sip-edge", "ivr", "provisioner", "presence")
NODE_IP = "192.0.2.7"
"""What the downward API's status.hostIP stands for when a pod's env is resolved here."""
PHONE_IP = "198.51.100.20"
"""A phone or trunk outside the cluster."""


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


# --- compose ------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as Compose gives it when no variable is set in the
    shell: ``${VAR:-default}`` becomes its default."""
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: _INTERPOLATION.sub(lambda m: m.group(2) or "", str(v)) for k, v in env.items()}


def _service_config(toml: Path, env: Mapping[str, str]) -> Config:
    config, problems = check_file(toml, env)
    errors = [str(p) for p in problems if p.severity == "error"]
    assert not errors, errors
    assert config is not None
    return config


def _published(ports: list[str], protocol: str) -> set[tuple[int, int]]:
    """(host port, container port) pairs published for ``protocol``, ranges expanded."""
    out: set[tuple[int, int]] = set()
    for entry in ports:
        spec, _, proto = str(entry).partition("/")
        if (proto or "tcp") != protocol:
            continue
        host, container = spec.rsplit(":", 1) if ":" in spec else (spec, spec)
        host = host.rsplit(":", 1)[-1]  # an IP before the host port

        def span(text: str) -> range:
            low, _, high = text.partition("-")
            return range(int(low), int(high or low) + 1)

        hosts, containers = span(host), span(container)
        assert len(hosts) == len(containers), entry
        out |= set(zip(hosts, containers, strict=True))
    return out


def test_compose_edges_publish_their_sip_port_and_exactly_their_rtp_range() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    toml = ROOT / "deploy" / "compose" / "hotdesk.toml"
    edges = {name: svc for name, svc in compose["services"].items() if name.startswith("sip-edge")}
    rtp_ranges: list[range] = []
    advertised: set[str] = set()
    for name, svc in edges.items():
        sip = _service_config(toml, _compose_env(svc)).sip
        check_media_address(sip.advertised_host)
        advertised.add(sip.advertised_host)
        udp, tcp = _published(svc["ports"], "udp"), _published(svc["ports"], "tcp")
        assert (sip.port, sip.port) in udp, name
        assert (sip.port, sip.port) in tcp, name
        rtp = range(sip.rtp_port_min, sip.rtp_port_max + 1)
        # The edge picks any even port of its range: all of them, and no more, published
        # on the same host port, so the SDP's port is the one the phone can reach.
        assert udp - {(sip.port, sip.port)} == {(p, p) for p in rtp}, name
        rtp_ranges.append(rtp)
    for i, a in enumerate(rtp_ranges):
        for b in rtp_ranges[i + 1 :]:
            assert not set(a) & set(b), "two edges on one host share RTP ports"
    # The provisioner tells phones to register at the address the edges advertise.
    provisioner = _service_config(toml, _compose_env(compose["services"]["provisioner"]))
    assert {provisioner.sip.advertised_host} == advertised


# --- kubernetes ---------------------------------------------------------------------------


@functools.cache
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
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    # Phones outside the cluster fetch their files; the console stays behind an Ingress.
    provisioning = services["provisioning"]["spec"]
    assert provisioning["type"] == "LoadBalancer"
    assert provisioning["externalTrafficPolicy"] == "Local"
    assert services["admin"]["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_dev_runs_one_of_everything() -> None:
    docs = _render("dev")
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            assert d["spec"]["replicas"] == 1, d["metadata"]["name"]
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (d["metadata"]["name"] == name or d["metadata"]["name"].startswith(name + "-"))
    ]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _container_env(docs: list[dict[str, Any]], workload: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom in order, then env
    (which wins); the downward API's status.hostIP is :data:`NODE_IP`."""
    container = workload["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= _one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            data = _one(docs, "Secret", source["secretRef"]["name"]).get("data", {})
            env |= {k: base64.b64decode(v).decode() for k, v in data.items()}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}, var
            env[var["name"]] = NODE_IP
    return env


def _configs(docs: list[dict[str, Any]], tmp_path: Path) -> dict[str, Config]:
    """Each service's configuration from the rendered ConfigMap and its env, loaded and
    checked by hotdesk's own loader (what ``hotdesk run`` does in the container)."""
    toml = tmp_path / "hotdesk.toml"
    toml.write_text(_one(docs, "ConfigMap", "hotdesk-config")["data"]["hotdesk.toml"])
    return {
        name: _service_config(toml, _container_env(docs, _one(docs, "Deployment", name)))
        for name in SERVICES
    }


def _selects(selector: dict[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector matches ``labels`` ({} matches everything)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


Peer = Callable[[dict[str, Any]], bool]


def _port_allowed(rule: dict[str, Any], port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    for p in rule["ports"]:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        if isinstance(p["port"], int) and p["port"] <= port <= p.get("endPort", p["port"]):
            return True
    return False


def _allowed(
    docs: list[dict[str, Any]],
    pod: Mapping[str, str],
    direction: str,
    peer: Peer,
    port: int,
    protocol: str,
) -> bool:
    """Whether the namespace's NetworkPolicies let ``pod`` send (Egress) or receive
    (Ingress) ``protocol``/``port`` to or from a peer that ``peer`` accepts. A pod that
    no policy of that direction selects is open; one that some policy selects is
    limited to the union of their rules."""
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and direction in d["spec"]["policyTypes"]
        and _selects(d["spec"]["podSelector"], pod)
    ]
    if not policies:
        return True
    key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in policies:
        for rule in policy["spec"].get(key, []):
            if not _port_allowed(rule, port, protocol):
                continue
            if peers not in rule or any(peer(entry) for entry in rule[peers]):
                return True
    return False


def _pod_in_namespace(labels: Mapping[str, str]) -> Peer:
    """A peer entry that selects a pod with ``labels`` in the policy's own namespace."""
    return lambda e: "namespaceSelector" not in e and _selects(e.get("podSelector", {}), labels)


def _pod_elsewhere(namespace: str, labels: Mapping[str, str]) -> Peer:
    def matches(e: dict[str, Any]) -> bool:
        if "namespaceSelector" not in e:
            return False
        ns_labels = {"kubernetes.io/metadata.name": namespace}
        return _selects(e["namespaceSelector"], ns_labels) and _selects(
            e.get("podSelector", {}), labels
        )

    return matches


def _address(ip: str) -> Peer:
    def matches(e: dict[str, Any]) -> bool:
        block = e.get("ipBlock")
        if block is None:
            return False
        address = ipaddress.ip_address(ip)
        network = ipaddress.ip_network(block["cidr"])
        return (
            address.version == network.version
            and address in network
            and not any(
                address in ipaddress.ip_network(x)
                for x in block.get("except", [])
                if ipaddress.ip_network(x).version == address.version
            )
        )

    return matches


def _pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Pod template labels per workload name (Deployments and the NATS StatefulSet)."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_edge_media_reaches_the_node_address_it_advertises(overlay: str, tmp_path: Path) -> None:
    docs = _render(overlay)
    edge = _one(docs, "Deployment", "sip-edge")
    pod = edge["spec"]["template"]["spec"]
    # The RTP range is on the node's own address: no Service carries a port range.
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    terms = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname"
        and _selects(t["labelSelector"], edge["spec"]["template"]["metadata"]["labels"])
        for t in terms
    ), "one edge per node: two would fight over the node's SIP and RTP ports"
    env = {v["name"]: v for v in pod["containers"][0]["env"]}
    for name in ("HOTDESK_SIP__ADVERTISED_HOST", "HOTDESK_SIP__LISTEN"):
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP", name

    sip = _configs(docs, tmp_path)["sip-edge"].sip
    assert sip.advertised_host == NODE_IP == sip.listen
    check_media_address(sip.advertised_host)  # the edge refuses to start otherwise
    rtp = range(sip.rtp_port_min, sip.rtp_port_max + 1)
    # The node's own services must not collide with it: the default NodePort range and
    # the kernel's default ephemeral ports.
    assert not set(rtp) & set(range(30000, 32768))
    assert not set(rtp) & set(range(32768, 61000))

    labels = edge["spec"]["template"]["metadata"]["labels"]
    anyone = _address(PHONE_IP)
    for port in (rtp.start, rtp.stop - 1, (rtp.start + rtp.stop) // 2):
        assert _allowed(docs, labels, "Ingress", anyone, port, "UDP"), port
    assert not _allowed(docs, labels, "Ingress", anyone, rtp.start - 1, "UDP")
    assert not _allowed(docs, labels, "Ingress", anyone, rtp.stop, "UDP")
    for protocol in ("UDP", "TCP"):
        assert _allowed(docs, labels, "Ingress", anyone, sip.port, protocol)

    # Service/sip carries signalling to ports the edge declares (on the node).
    declared = {(p["containerPort"], p["protocol"]) for p in pod["containers"][0]["ports"]}
    service = _one(docs, "Service", "sip")
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    for p in service["spec"]["ports"]:
        assert (p["targetPort"], p["protocol"]) in declared, p
    assert (sip.port, "UDP") in {(p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_loads_a_valid_config_from_the_manifests(
    overlay: str, tmp_path: Path
) -> None:
    docs = _render(overlay)
    configs = _configs(docs, tmp_path)
    for name, config in configs.items():
        container = _one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        health = {p["name"]: p["containerPort"] for p in container["ports"]}["health"]
        assert config.telemetry.health_port == health, name
        assert container["readinessProbe"]["httpGet"]["port"] == "health", name
    # The provisioner writes the SIP server into the phones' files: never a loopback
    # address, which no phone could register at.
    server = configs["provisioner"].sip.advertised_host
    assert server
    assert server not in ("localhost", "127.0.0.1", "::1")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_denied_by_default_and_open_for_nats_dns_and_telemetry(
    overlay: str, tmp_path: Path
) -> None:
    docs = _render(overlay)
    pods = _pods(docs)
    assert set(pods) == {"nats", *SERVICES}
    default_deny = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"] == {}
        and {"Ingress", "Egress"} <= set(d["spec"]["policyTypes"])
        and not d["spec"].get("ingress")
        and not d["spec"].get("egress")
    ]
    assert default_deny, "no default deny for both directions"

    nats = pods["nats"]
    dns = _pod_elsewhere("kube-system", {"k8s-app": "kube-dns"})
    endpoint = urlsplit(_configs(docs, tmp_path)["ivr"].telemetry.otlp_endpoint)
    assert endpoint.hostname
    assert endpoint.port
    collector_ns = endpoint.hostname.split(".")[1]
    collector = _pod_elsewhere(collector_ns, {"app.kubernetes.io/name": "otel-collector"})
    outside = _address(PHONE_IP)
    for name, labels in pods.items():
        for protocol in ("UDP", "TCP"):
            assert _allowed(docs, labels, "Egress", dns, 53, protocol), (name, protocol)
        assert not _allowed(docs, labels, "Egress", dns, 80, "TCP"), name
    for name in SERVICES:
        labels = pods[name]
        assert _allowed(docs, labels, "Egress", _pod_in_namespace(nats), 4222, "TCP"), name
        assert _allowed(docs, labels, "Egress", collector, endpoint.port, "TCP"), name
        # Only presence (webhooks) and the edge (phones, trunks) talk to the outside.
        assert _allowed(docs, labels, "Egress", outside, 443, "TCP") == (name == "presence")
        assert _allowed(docs, labels, "Egress", outside, 5060, "UDP") == (name == "sip-edge")
        assert not _allowed(docs, labels, "Egress", outside, 4222, "TCP"), name
    # The JetStream cluster's routes.
    assert _allowed(docs, nats, "Egress", _pod_in_namespace(nats), 6222, "TCP")
    assert _allowed(docs, nats, "Ingress", _pod_in_namespace(nats), 6222, "TCP")

    edge = pods["sip-edge"]
    sip = _configs(docs, tmp_path)["sip-edge"].sip
    for port in (sip.port, 16384, 32766, 65534):  # a phone's SIP or RTP port (its SDP's)
        assert _allowed(docs, edge, "Egress", outside, port, "UDP"), port
    for port in (sip.port, sip.tls_port):
        assert _allowed(docs, edge, "Egress", outside, port, "TCP"), port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_admits_its_clients_and_the_edges_from_their_node(overlay: str) -> None:
    docs = _render(overlay)
    pods = _pods(docs)
    nats = pods["nats"]
    for name in SERVICES:
        assert _allowed(docs, nats, "Ingress", _pod_in_namespace(pods[name]), 4222, "TCP"), name
    # A host-network edge connects from its node's address, which no pod selector
    # matches: the node addresses must be admitted on the client port, and only there.
    node = _address("10.0.3.17")
    assert _allowed(docs, nats, "Ingress", node, 4222, "TCP")
    assert not _allowed(docs, nats, "Ingress", node, 6222, "TCP")
    assert not _allowed(docs, nats, "Ingress", _address(PHONE_IP), 4222, "TCP")
