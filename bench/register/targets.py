"""The registrars under load: a :class:`Target` starts one (or names one already
running) and yields a :class:`Registrar`: where it listens and which processes' CPU
time it costs.

* :class:`KamailioTarget` — Debian's Kamailio as an authenticating registrar, started
  here with a generated config (``bench.kamailio``).
* :class:`HotdeskEdgeTarget` — the hotdesk SIP edge, started here as
  ``python -m hotdesk_cli run sip-edge`` with a generated TOML config and its own
  nats-server.
* :class:`ExternalTarget` — any registrar at an address that already knows the users.

A target that cannot run raises :class:`TargetUnavailable`; the benchmark records the
reason and goes on with the others.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.kamailio import Kamailio, KamailioError
from hotdesk_runtime.process import die_with_parent

from .sipp import SippError, run_step

HOST = "127.0.0.1"
User = tuple[str, str]
"""A user's SIP name (also the digest user name) and password."""


class TargetUnavailable(RuntimeError):
    """The target could not be started or does not register the benchmark's users."""


@dataclass
class Registrar:
    """A running registrar: its UDP address and the processes whose CPU it spends."""

    host: str
    port: int
    pids: Callable[[], list[int]] = list
    """The registrar's own processes (read before and after each step)."""
    helper_pids: Callable[[], list[int]] = list
    """Processes it needs but that are reported apart (the edge's nats-server)."""
    notes: dict[str, str] = field(default_factory=dict)


class Target(Protocol):
    """Something that can be benchmarked: a named way to get a running registrar."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def running(
        self, workdir: Path, users: Sequence[User]
    ) -> AbstractContextManager[Registrar]: ...


def users(count: int) -> list[User]:
    """The benchmark's users: desk names ``HD0000``… (valid as hotdesk desks and as
    Kamailio users alike), each with its own password."""
    return [(f"HD{n:04d}", f"pw{n:04d}k{(n * 7919) % 10007:05d}") for n in range(count)]


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the edge listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the processes (all their threads), from ``/proc/<pid>/stat``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone: its time is lost either way
        fields = stat.rsplit(")", 1)[1].split()
        # Fields 14 and 15 of proc(5) (utime, stime); index 11/12 after the name.
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def sip_answers(host: str, port: int, timeout: float) -> bool:
    """Whether anything answers an OPTIONS (RFC 3261 section 11) within ``timeout``."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        local = sock.getsockname()[1]
        while time.monotonic() < deadline:
            branch = "z9hG4bK" + uuid.uuid4().hex[:16]
            request = (
                f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {HOST}:{local};branch={branch}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{HOST}>;tag={uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:{host}:{port}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}@{HOST}\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), (host, port))
            sock.settimeout(min(0.3, max(0.01, deadline - time.monotonic())))
            with contextlib.suppress(OSError):
                data = sock.recv(65535)
                if data.startswith(b"SIP/2.0 "):
                    return True
    return False


def check_registers(registrar: Registrar, workdir: Path, users_csv: Path, timeout: float) -> None:
    """Wait until one round of authenticated registrations succeeds (the users may be
    loaded after the port opens), or raise :class:`TargetUnavailable`."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            run = run_step(
                workdir / "check",
                registrar.host,
                registrar.port,
                rate=20,
                calls=5,
                users_csv=users_csv,
                max_seconds=8,
            )
        except SippError as exc:
            raise TargetUnavailable(str(exc)) from exc
        if run.counts.successful == 5:
            return
        last = f"{run.counts.successful}/5 registered, {run.counts.failed} failed"
        time.sleep(0.5)
    raise TargetUnavailable(f"the users' REGISTERs do not succeed: {last}")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --- Kamailio ---------------------------------------------------------------------------
@dataclass
class KamailioTarget:
    """Kamailio started here; ``children=None`` keeps its default worker count."""

    name: str = "kamailio"
    children: int | None = 1

    @property
    def description(self) -> str:
        workers = "default children" if self.children is None else f"children={self.children}"
        return f"Kamailio, auth + htable passwords + usrloc in memory, UDP, {workers}"

    @contextlib.contextmanager
    def running(self, workdir: Path, users: Sequence[User]) -> Iterator[Registrar]:
        kamailio = Kamailio(workdir, HOST, free_port(), list(users), children=self.children)
        try:
            kamailio.start()
        except (KamailioError, OSError) as exc:
            raise TargetUnavailable(str(exc)) from exc
        try:
            if not sip_answers(HOST, kamailio.port, 10):
                raise TargetUnavailable("kamailio does not answer SIP")
            yield Registrar(HOST, kamailio.port, pids=kamailio.pids)
        finally:
            kamailio.stop()


# --- the hotdesk edge -------------------------------------------------------------------
def edge_config(users: Sequence[User], *, nats_url: str, sip_port: int, health_port: int) -> str:
    """The edge's TOML config: every user a desk with its SIP password; limits meant
    for phones (per-source rate limit, auth-failure blocking) lifted, since all the
    load comes from one address."""
    lines = [
        "[nats]",
        f'url = "{nats_url}"',
        "",
        "[sip]",
        f'listen = "{HOST}"',
        f"port = {sip_port}",
        f'advertised_host = "{HOST}"',
        "rate_limit_per_second = 1000000.0",
        "rate_limit_burst = 1000000",
        "auth_fail_limit = 1000000",
        "",
        "[telemetry]",
        f"health_port = {health_port}",
        'log_level = "WARNING"',
        "",
    ]
    for n, (name, password) in enumerate(users):
        lines += [
            "[[desks]]",
            f'name = "{name}"',
            f'mac = "02be{n:08x}"',
            f'sip_password = "{password}"',
            "",
        ]
    return "\n".join(lines)


def edge_not_written() -> str | None:
    """Why the edge cannot run yet (no ``serve`` in ``hotdesk_sip_edge.main``), or None."""
    from hotdesk_cli.runner import find_serve

    try:
        serve = find_serve("sip-edge")
    except Exception as exc:  # a half-written module: report it, do not crash the run
        return f"hotdesk_sip_edge.main does not import: {type(exc).__name__}: {exc}"
    if serve is None:
        return "hotdesk_sip_edge.main has no serve() yet"
    return None


@dataclass
class HotdeskEdgeTarget:
    """The hotdesk SIP edge in its own process, with a nats-server of its own."""

    name: str = "hotdesk-edge"
    description: str = "hotdesk SIP edge (one Python process, uvloop), UDP, own nats-server"
    start_timeout: float = 30.0

    @contextlib.contextmanager
    def running(self, workdir: Path, users: Sequence[User]) -> Iterator[Registrar]:
        from hotdesk_runtime.nats import EmbeddedNats, NatsError

        reason = edge_not_written()
        if reason:
            raise TargetUnavailable(reason)
        workdir.mkdir(parents=True, exist_ok=True)
        nats_server = EmbeddedNats(workdir / "nats", free_port(), server_name="bench")
        try:
            nats_server.start()
        except NatsError as exc:
            raise TargetUnavailable(f"nats-server: {exc}") from exc
        try:
            port = free_port()
            config = workdir / "hotdesk.toml"
            config.write_text(
                edge_config(users, nats_url=nats_server.url, sip_port=port, health_port=free_port())
            )
            log_path = workdir / "edge.log"
            with log_path.open("wb") as log:
                edge = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "hotdesk_cli",
                        "run",
                        "sip-edge",
                        "--config",
                        str(config),
                        "--own-directory",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent(),
                )
            try:
                if not sip_answers(HOST, port, self.start_timeout) or edge.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-1500:]
                    raise TargetUnavailable(
                        f"the edge did not answer SIP within {self.start_timeout:.0f} s "
                        f"(exit code {edge.poll()}): {tail}"
                    )
                nats_pid = nats_server.proc.pid if nats_server.proc else None
                yield Registrar(
                    HOST,
                    port,
                    pids=lambda: [edge.pid, *_children(edge.pid)],
                    helper_pids=lambda: [nats_pid] if nats_pid else [],
                    notes={"bus": "nats-server CPU reported apart as helper CPU"},
                )
            finally:
                _stop(edge)
        finally:
            nats_server.stop()


# --- anything else ----------------------------------------------------------------------
@dataclass
class ExternalTarget:
    """A registrar already running at ``host:port`` that knows :func:`users`; its CPU
    is measured when its ``pid`` is given."""

    name: str
    host: str
    port: int
    pid: int | None = None
    description: str = "a registrar started outside the benchmark"
    probe_seconds: float = 2.0

    def __post_init__(self) -> None:
        # Load goes to this machine only.
        if not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"{self.host} is not a loopback address: benchmark only local")

    @contextlib.contextmanager
    def running(self, workdir: Path, users: Sequence[User]) -> Iterator[Registrar]:
        if not sip_answers(self.host, self.port, self.probe_seconds):
            raise TargetUnavailable(f"nothing answers SIP at {self.host}:{self.port}")
        pid = self.pid
        yield Registrar(self.host, self.port, pids=lambda: [pid, *_children(pid)] if pid else [])
