"""A SIP edge as a deployment runs it: a ``hotdesk run sip-edge`` process on the test's
nats-server, logging JSON lines to a file, following the directory in the KV bucket;
the test may kill it outright (SIGKILL: nothing it would do on the way out happens)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from hotdesk_contracts.directory import Directory
from hotdesk_runtime.process import die_with_parent
from tests.e2e.system import free_udp_port

READY = "sip edge listening"
"""What the edge logs once its transports are up."""


def _quoted(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def config_toml(directory: Directory, nats_url: str, sip_port: int, rtp: tuple[int, int]) -> str:
    """The desks, extensions, trunks and dial codes of ``directory`` and the edge's
    settings on loopback (any expiry allowed), logging JSON at INFO."""
    lines = ["[nats]", f"url = {_quoted(nats_url)}", ""]
    lines += ["[telemetry]", 'log_format = "json"', 'log_level = "INFO"', ""]
    lines += [
        "[sip]",
        'listen = "127.0.0.1"',
        'advertised_host = "127.0.0.1"',
        f"port = {sip_port}",
        "min_expires = 1",
        f"rtp_port_min = {rtp[0]}",
        f"rtp_port_max = {rtp[1]}",
        "",
    ]
    for desk in directory.desks:
        lines += ["[[desks]]", f"name = {_quoted(desk.name)}", f"mac = {_quoted(desk.mac)}"]
        lines += [f"sip_password = {_quoted(desk.sip_password)}", ""]
    for ext in directory.extensions:
        lines += ["[[extensions]]", f"number = {_quoted(ext.number)}"]
        lines += [f"name = {_quoted(ext.name)}", ""]
    for trunk in directory.trunks:
        lines += ["[[trunks]]", f"name = {_quoted(trunk.name)}", f"uri = {_quoted(trunk.uri)}"]
        lines += [f"emergency = {'true' if trunk.emergency else 'false'}", ""]
    return "\n".join(lines)


@dataclass
class EdgeProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log lines so far (anything else it printed is left out)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def said(self, message: str) -> list[dict[str, Any]]:
        """Its log records whose message starts with ``message``."""
        return [r for r in self.records() if str(r.get("message", "")).startswith(message)]

    def kill(self) -> None:
        """SIGKILL, as when the machine or the container dies."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def _ready(edge: EdgeProcess, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if edge.proc.poll() is not None:
            tail = edge.log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"hotdesk run sip-edge exited with {edge.proc.returncode}: {tail}")
        if edge.said(READY):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"hotdesk run sip-edge never got ready: {edge.log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def edge_process(
    nc: Client, directory: Directory, tmp: Path, rtp: tuple[int, int]
) -> AsyncIterator[EdgeProcess]:
    """A ``hotdesk run sip-edge`` process on ``nc``'s server with ``directory``, on a
    free loopback port, listening when the block starts; stopped when it ends (if the
    test has not killed it)."""
    url = nc.connected_url
    assert url is not None, "the test's connection is not connected"
    port = free_udp_port()
    path = tmp / "edge.toml"
    nats_url = f"nats://{url.hostname}:{url.port}"
    path.write_text(config_toml(directory, nats_url, port, rtp), encoding="utf-8")
    log = tmp / "edge.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hotdesk_cli", "run", "sip-edge", "--config", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
    edge = EdgeProcess(proc, log, port)
    try:
        await _ready(edge)
        yield edge
    finally:
        await asyncio.to_thread(_stop, proc)
