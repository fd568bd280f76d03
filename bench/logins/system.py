"""The system under load, as separate processes like a deployment: a nats-server, the
IVR (``hotdesk run ivr``, publishing the directory) and the SIP edge
(``hotdesk run sip-edge``), each on free loopback ports with one generated config."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nats

from bench.register.targets import HOST, cpu_seconds, free_port, sip_answers
from hotdesk_ivr import prompts
from hotdesk_runtime.nats import EmbeddedNats
from hotdesk_runtime.process import die_with_parent


class SystemUnavailable(RuntimeError):
    """A process of the system did not start or did not become ready."""


def config_toml(
    desks: Sequence[tuple[str, str]],
    users: Sequence[str],
    pin_hash: str,
    *,
    nats_url: str,
    sip_port: int,
    rtp: tuple[int, int],
    health_port: int,
    pepper: str = "",
) -> str:
    """Desks with their SIP passwords, users sharing one PIN hash (the cost of a check
    is in the hash's own parameters, not in which user it is), SIP on loopback.

    The per-source limits meant for phones are lifted: all the load comes from one
    address. ``pepper`` becomes ``pins.pepper`` (only the IVR's config gets it).
    """
    lines = [
        "[nats]",
        f'url = "{nats_url}"',
        "",
        "[sip]",
        f'listen = "{HOST}"',
        f"port = {sip_port}",
        f'advertised_host = "{HOST}"',
        f"rtp_port_min = {rtp[0]}",
        f"rtp_port_max = {rtp[1]}",
        "rate_limit_per_second = 1000000.0",
        "rate_limit_burst = 1000000",
        "auth_fail_limit = 1000000",
        "",
        "[telemetry]",
        f"health_port = {health_port}",
        'log_level = "WARNING"',
        "",
    ]
    if pepper:
        lines += ["[pins]", f'pepper = "{pepper}"', ""]
    for n, (name, password) in enumerate(desks):
        lines += ["[[desks]]", f'name = "{name}"', f'mac = "02bf{n:08x}"']
        lines += [f'sip_password = "{password}"', ""]
    for user in users:
        lines += ["[[extensions]]", f'number = "{user}"', f'name = "Bench User {user}"']
        lines += [f'pin_hash = "{pin_hash}"', ""]
    return "\n".join(lines)


@dataclass
class RunningSystem:
    """Where the system listens and which processes spend its CPU."""

    sip_port: int
    nats_url: str
    edge_metrics_url: str
    edge_pid: int
    ivr_pid: int
    nats_pid: int

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the edge, the IVR and nats-server (from /proc)."""
        return {
            "edge": cpu_seconds([self.edge_pid]),
            "ivr": cpu_seconds([self.ivr_pid]),
            "nats_server": cpu_seconds([self.nats_pid]),
        }


def _service(name: str, config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hotdesk_cli", "run", name, "--config", str(config), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _prompts_installed(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and proc.poll() is None:
            with contextlib.suppress(Exception):  # the store appears while the IVR starts
                if {row.state for row in await prompts.status(js)} == {prompts.OK}:
                    return
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
    raise SystemUnavailable(f"the IVR did not install its prompts (exit code {proc.poll()})")


def _port_outside(rtp: tuple[int, int]) -> int:
    """A free port that is not in the RTP range (the config check refuses one there)."""
    while True:
        port = free_port()
        if not rtp[0] <= port <= rtp[1]:
            return port


@contextlib.asynccontextmanager
async def running(
    workdir: Path,
    desks: Sequence[tuple[str, str]],
    users: Sequence[str],
    pin_hash: str,
    *,
    pepper: str = "",
    rtp: tuple[int, int] = (40000, 41999),
    start_timeout: float = 40.0,
) -> AsyncIterator[RunningSystem]:
    """nats-server, then the IVR, then the edge; stopped in reverse order."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedNats(workdir / "nats", free_port(), server_name="bench-logins")
    server.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sip_port, edge_health, ivr_health = (_port_outside(rtp) for _ in range(3))
        configs = {}
        for name, health in (("sip-edge", edge_health), ("ivr", ivr_health)):
            configs[name] = workdir / f"{name}.toml"
            configs[name].write_text(
                config_toml(
                    desks,
                    users,
                    pin_hash,
                    nats_url=server.url,
                    sip_port=sip_port,
                    rtp=rtp,
                    health_port=health,
                    pepper=pepper if name == "ivr" else "",
                )
            )
        ivr = _service("ivr", configs["ivr"], workdir / "ivr.log", "--own-directory")
        procs.append(ivr)
        await _prompts_installed(server.url, ivr, start_timeout)
        edge = _service("sip-edge", configs["sip-edge"], workdir / "edge.log")
        procs.append(edge)
        answered = await asyncio.to_thread(sip_answers, HOST, sip_port, start_timeout)
        if not answered or edge.poll() is not None:
            tail = (workdir / "edge.log").read_text(errors="replace")[-1500:]
            raise SystemUnavailable(f"the edge did not answer SIP (exit {edge.poll()}): {tail}")
        await asyncio.sleep(1.0)  # the IVR's and the edge's subscriptions are in place
        assert server.proc is not None
        yield RunningSystem(
            sip_port=sip_port,
            nats_url=server.url,
            edge_metrics_url=f"http://{HOST}:{edge_health}/metrics",
            edge_pid=edge.pid,
            ivr_pid=ivr.pid,
            nats_pid=server.proc.pid,
        )
    finally:
        for proc in reversed(procs):
            _stop(proc)
        server.stop()
