"""The scaled-out system on one machine, as separate processes like a deployment.

A 3-node nats-server cluster (:class:`hotdesk_runtime.cluster.LocalCluster`, streams
and buckets at R3) and any number of ``hotdesk run <service>`` processes per service,
each on free loopback ports, all reading one generated config file with their own
ports given as ``HOTDESK_*`` overrides (as ``docker-compose.yml`` does). Instances are
added while the system runs and can be killed with SIGKILL, one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats

from bench.register.targets import HOST, cpu_seconds, free_port, sip_answers
from hotdesk_contracts import streams
from hotdesk_ivr import prompts
from hotdesk_runtime.cluster import LocalCluster
from hotdesk_runtime.nats import EmbeddedNats
from hotdesk_runtime.process import die_with_parent

SERVICES = ("ivr", "sip-edge", "provisioner", "presence")
"""In start order: the first IVR publishes the directory and installs the prompts."""
RTP_PORTS_PER_EDGE = 1000
PIN_DIGIT_TIMEOUT_SECONDS = 4.0
"""The edge gives up on a silent IVR after twice this (plays the error prompt, BYE)."""


class SystemUnavailable(RuntimeError):
    """A process of the system did not start or did not become ready."""


def config_toml(
    desks: Sequence[tuple[str, str]], users: Sequence[str], pin_hash: str, *, nats_url: str
) -> str:
    """The one config file every instance reads: the cluster at R3, desks with their SIP
    passwords, users sharing one PIN hash (a check costs what the hash's parameters say,
    whoever the user is), SIP on loopback. Ports are per instance (environment).

    The per-source limits meant for phones are lifted: all the load comes from one
    address.
    """
    lines = [
        "[nats]",
        f'url = "{nats_url}"',
        "replicas = 3",
        "",
        "[sip]",
        f'listen = "{HOST}"',
        f'advertised_host = "{HOST}"',
        "rate_limit_per_second = 1000000.0",
        "rate_limit_burst = 1000000",
        "auth_fail_limit = 1000000",
        "",
        "[admin]",
        f'listen = "{HOST}"',
        "",
        "[provisioning]",
        f'listen = "{HOST}"',
        "",
        "[policies]",
        f"pin_digit_timeout_seconds = {PIN_DIGIT_TIMEOUT_SECONDS}",
        "",
        "[telemetry]",
        'log_level = "WARNING"',
        "",
    ]
    for n, (name, password) in enumerate(desks):
        lines += ["[[desks]]", f'name = "{name}"', f'mac = "02bc{n:08x}"']
        lines += [f'sip_password = "{password}"', ""]
    for user in users:
        lines += ["[[extensions]]", f'number = "{user}"', f'name = "Scale User {user}"']
        lines += [f'pin_hash = "{pin_hash}"', ""]
    return "\n".join(lines)


@dataclass
class Instance:
    """One service process."""

    service: str
    number: int
    proc: subprocess.Popen[bytes]
    log: Path
    health_port: int
    sip_port: int = 0
    """The edge's SIP port (UDP and TCP); 0 for other services."""
    http_port: int = 0
    """Presence's admin API or the provisioner's HTTP port; 0 for the others."""
    killed_at: float | None = None
    """Harness monotonic time of the SIGKILL, if it was killed."""
    cpu_at_kill: float = 0.0
    """CPU seconds it had spent when it was killed (its /proc entry goes with it)."""

    @property
    def name(self) -> str:
        return f"{self.service}-{self.number}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class ScaleSystem:
    """The cluster and the service instances started so far."""

    workdir: Path
    cluster: LocalCluster
    config: Path
    pepper: str = ""
    """``pins.pepper``, given to the IVR instances only (as the docs advise)."""
    instances: list[Instance] = field(default_factory=list)
    start_timeout: float = 60.0
    _next_rtp: int = 30000
    _dead_nats_cpu: float = 0.0

    @property
    def nats_url(self) -> str:
        return self.cluster.url

    def of(self, service: str, *, alive: bool = True) -> list[Instance]:
        """The instances of ``service`` (only the live ones unless ``alive=False``)."""
        return [i for i in self.instances if i.service == service and (i.alive() or not alive)]

    @property
    def edges(self) -> list[Instance]:
        return self.of("sip-edge")

    async def add(self, service: str) -> Instance:
        """Start one more instance of ``service`` and wait until it serves (several may
        be added at once)."""
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
        number = len(self.of(service, alive=False)) + 1
        health = free_port()
        env = {
            "HOTDESK_TELEMETRY__HEALTH_PORT": str(health),
            # Keep the instances' JSON logs apart from the bench's own output.
            "HOTDESK_TELEMETRY__LOG_FORMAT": "json",
        }
        sip_port = http_port = 0
        if service == "sip-edge":
            sip_port = free_port()
            low = self._next_rtp
            self._next_rtp += RTP_PORTS_PER_EDGE
            env |= {
                "HOTDESK_SIP__PORT": str(sip_port),
                "HOTDESK_SIP__RTP_PORT_MIN": str(low),
                "HOTDESK_SIP__RTP_PORT_MAX": str(low + RTP_PORTS_PER_EDGE - 1),
            }
        elif service == "presence":
            http_port = free_port()
            env["HOTDESK_ADMIN__PORT"] = str(http_port)
        elif service == "provisioner":
            http_port = free_port()
            env["HOTDESK_PROVISIONING__PORT"] = str(http_port)
        extra: list[str] = []
        if service == "ivr":
            extra.append("--own-directory")
            if self.pepper:
                env["HOTDESK_PINS__PEPPER"] = self.pepper
        log = self.workdir / f"{service}-{number}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hotdesk_cli",
                    "run",
                    service,
                    "--config",
                    str(self.config),
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ | env,
                preexec_fn=die_with_parent(),
            )
        instance = Instance(service, number, proc, log, health, sip_port, http_port)
        self.instances.append(instance)
        await self._ready(instance)
        return instance

    async def _ready(self, instance: Instance) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        if instance.service == "ivr" and instance.number == 1:
            await _prompts_installed(self.nats_url, instance, self.start_timeout)
        if instance.service == "sip-edge":
            answered = await asyncio.to_thread(
                sip_answers, HOST, instance.sip_port, self.start_timeout
            )
            if not answered:
                raise SystemUnavailable(
                    f"{instance.name} did not answer SIP (exit {instance.proc.poll()}):"
                    f" {instance.log_tail()}"
                )
        port = instance.http_port or instance.health_port
        path = "/readyz" if port == instance.health_port else "/"
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if not instance.alive():
                    raise SystemUnavailable(
                        f"{instance.name} exited with {instance.proc.poll()}: {instance.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"http://{HOST}:{port}{path}")
                    if response.status_code < 500:
                        return
                if loop.time() > deadline:
                    raise SystemUnavailable(f"{instance.name} not ready: {instance.log_tail()}")
                await asyncio.sleep(0.2)

    def kill(self, instance: Instance) -> None:
        """SIGKILL one instance (no goodbye to NATS, no BYE for its calls)."""
        instance.cpu_at_kill = cpu_seconds([instance.pid])
        instance.killed_at = time.monotonic()
        if instance.alive():
            instance.proc.kill()
        instance.proc.wait()

    def kill_node(self, node: EmbeddedNats) -> None:
        """SIGKILL one nats-server node (its CPU so far is kept for :meth:`cpu`)."""
        if node.pid is not None:
            self._dead_nats_cpu += cpu_seconds([node.pid])
        node.kill()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far per service and of the nats-server nodes together, the
        killed ones' up to their death included."""
        out = {}
        for service in SERVICES:
            every = self.of(service, alive=False)
            live = cpu_seconds([i.pid for i in every if i.killed_at is None])
            out[service] = live + sum(i.cpu_at_kill for i in every if i.killed_at is not None)
        pids = [n.pid for n in self.cluster.nodes if n.pid is not None]
        out["nats_server"] = cpu_seconds(pids) + self._dead_nats_cpu
        return out

    def stop(self) -> None:
        for instance in reversed(self.instances):
            _stop(instance.proc)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _prompts_installed(url: str, instance: Instance, timeout: float) -> None:
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and instance.alive():
            with contextlib.suppress(Exception):  # the store appears while the IVR starts
                # Only look once the IVR made the store: prompts.status would create it
                # with one replica, and the IVR would then have to grow it under load.
                await js.object_store(streams.PROMPTS.bucket)
                if {row.state for row in await prompts.status(js)} == {prompts.OK}:
                    return
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
    raise SystemUnavailable(
        f"the IVR did not install its prompts (exit {instance.proc.poll()}): {instance.log_tail()}"
    )


@contextlib.asynccontextmanager
async def running(
    workdir: Path,
    desks: Sequence[tuple[str, str]],
    users: Sequence[str],
    pin_hash: str,
    *,
    pepper: str = "",
    instances: int = 1,
    start_timeout: float = 60.0,
) -> AsyncIterator[ScaleSystem]:
    """The cluster, then ``instances`` of every service in :data:`SERVICES` order;
    everything stopped at the end (services first, then the nodes). ``pin_hash`` is
    every user's; ``pepper`` the ``pins.pepper`` it was made with, if any."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(workdir / "nats", 3, name="hotdesk-scale")
    await asyncio.to_thread(cluster.start, start_timeout)
    config = workdir / "hotdesk.toml"
    config.write_text(config_toml(desks, users, pin_hash, nats_url=cluster.url))
    system = ScaleSystem(workdir, cluster, config, pepper=pepper, start_timeout=start_timeout)
    try:
        # The first IVR publishes the directory and installs the prompts; the others
        # start together once they are there.
        await system.add(SERVICES[0])
        rest = list(SERVICES[1:]) + [s for _ in range(instances - 1) for s in SERVICES]
        await asyncio.gather(*(system.add(s) for s in rest))
        yield system
    finally:
        system.stop()
        await asyncio.to_thread(cluster.stop)
