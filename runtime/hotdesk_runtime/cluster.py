"""A JetStream cluster of nats-server processes on one machine.

:class:`LocalCluster` starts ``size`` (3 by default) :class:`~hotdesk_runtime.nats.EmbeddedNats`
nodes on free 127.0.0.1 ports, each with a store of its own and routes to the others,
and waits until JetStream has a meta leader, so streams with ``replicas = 3`` can be
created at once. It is the shape of ``docker-compose.yml`` and the Kubernetes ``prod``
overlay on one host, used by the scale-out test and ``python -m bench scale``; a node
can be killed (SIGKILL, nothing flushed) and started again on its port and store.

The nodes' readiness comes from their monitoring endpoint: ``/healthz`` answers 200
only once the server's JetStream is up and current with the cluster's meta leader.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from .nats import EMBEDDED_HOST, ClusterRoutes, EmbeddedNats, NatsError


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind((EMBEDDED_HOST, 0))
        return int(probe.getsockname()[1])


def _health(port: int, timeout: float) -> tuple[int, dict[str, object]]:
    """The status and body of a node's ``/healthz`` on its loopback monitoring port."""
    url = f"http://{EMBEDDED_HOST}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError):
            return int(exc.code), json.loads(exc.read() or b"{}")
        return int(exc.code), {}


class LocalCluster:
    """``size`` nats-server nodes with JetStream, clustered over loopback routes."""

    def __init__(self, base_dir: str | Path, size: int = 3, *, name: str = "hotdesk") -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, not {size}")
        self.base_dir = Path(base_dir)
        self.name = name
        route_ports = [free_tcp_port() for _ in range(size)]
        self.nodes: list[EmbeddedNats] = []
        for i, route_port in enumerate(route_ports):
            peers = tuple(p for p in route_ports if p != route_port)
            self.nodes.append(
                EmbeddedNats(
                    self.base_dir / f"n{i + 1}",
                    free_tcp_port(),
                    monitor_port=free_tcp_port(),
                    server_name=f"{name}-n{i + 1}",
                    cluster=ClusterRoutes(name=name, port=route_port, peers=peers)
                    if size > 1
                    else None,
                )
            )

    @property
    def urls(self) -> list[str]:
        """Every node's client URL."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what ``nats.url`` takes)."""
        return ",".join(self.urls)

    def node(self, server_name: str) -> EmbeddedNats:
        """The node called ``server_name`` (as JetStream names stream leaders)."""
        for node in self.nodes:
            if node.server_name == server_name:
                return node
        raise KeyError(f"no node {server_name!r} in cluster {self.name}")

    def start(self, timeout: float = 60.0) -> None:
        """Start every node and wait until all of them report JetStream current."""
        try:
            for node in self.nodes:
                node.start(timeout)
            self.wait_healthy(self.nodes, timeout)
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, nodes: list[EmbeddedNats], timeout: float = 60.0) -> None:
        """Wait until each of ``nodes`` answers ``/healthz`` with 200 (JetStream current)."""
        deadline = time.monotonic() + timeout
        for node in nodes:
            last = "no answer"
            while True:
                if not node.running():
                    raise NatsError(f"{node.server_name} exited while the cluster formed")
                with contextlib.suppress(OSError):
                    status, body = _health(node.monitor_port, 2.0)
                    if status == 200:
                        break
                    last = str(body.get("error") or body)
                if time.monotonic() > deadline:
                    raise NatsError(f"{node.server_name} not healthy within {timeout:.0f}s: {last}")
                time.sleep(0.2)

    def restart(self, node: EmbeddedNats, timeout: float = 60.0) -> None:
        """Start a stopped or killed node again on its port and store."""
        node.start(timeout)
        self.wait_healthy([node], timeout)

    def running(self) -> list[EmbeddedNats]:
        """The nodes whose process is alive."""
        return [node for node in self.nodes if node.running()]

    def stop(self) -> None:
        """Stop every node still running (SIGTERM, so stores are flushed)."""
        for node in self.nodes:
            node.stop()
