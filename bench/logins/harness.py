"""One rate step of the logins benchmark against a running system: SIPp places the
calls, the harness follows the bus (the last PIN digit at the edge, the login in the
ledger) and reads the edge's RTP jitter histogram and the processes' CPU; the PIN-hash
profiles the system runs with."""

from __future__ import annotations

import asyncio
import math
import os
import resource
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import argon2
import httpx
import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from bench.register.sipp import SippCounts, SippError, parse_stat
from bench.register.sipp import binary as sipp_binary
from bench.register.targets import HOST, free_port
from hotdesk_contracts import subjects
from hotdesk_contracts.codec import decode_event
from hotdesk_contracts.events import LoggedIn, LoggedOut, Roamed
from hotdesk_contracts.messages import DtmfReceived
from hotdesk_runtime import pins

from .figures import (
    bucket_quantile,
    buckets_delta,
    completion_rate,
    digit_to_ledger_ms,
    parse_histogram,
    quantile,
)
from .scenario import injection_file, plan, scenario_xml
from .system import RunningSystem

PIN = "2468"
JITTER_METRIC = "hotdesk_rtp_send_jitter_seconds"
MIN_ACHIEVED_RATIO = 0.9
"""A step holds only if completions keep up with at least this share of the offered rate."""


@dataclass
class Observed:
    """What the bus showed during one step, keyed by SIP Call-ID."""

    last_digit_at: dict[str, datetime] = field(default_factory=dict)
    digits: dict[str, str] = field(default_factory=dict)
    """Every key each call's edge reported, in order."""
    ledger_at: dict[str, datetime] = field(default_factory=dict)
    arrivals: list[float] = field(default_factory=list)
    """Harness monotonic time of each login event."""
    seated: dict[str, str] = field(default_factory=dict)
    """Who sits at each desk by the ledger (kept across steps)."""

    async def subscribe(self, nc: NatsClient) -> None:
        """Follow the edge's call events and the desks' ledger subjects on ``nc``."""
        await nc.subscribe(subjects.EDGE_CALL_ALL, cb=self.on_call_event)
        await nc.subscribe(subjects.LEDGER_DESKS, cb=self.on_ledger)
        await nc.flush()

    async def on_call_event(self, msg: Msg) -> None:
        if not msg.subject.endswith(".dtmf"):
            return
        try:
            event = msgspec.json.decode(msg.data, type=DtmfReceived)
        except msgspec.DecodeError:
            return
        self.digits[event.call_id] = self.digits.get(event.call_id, "") + event.digit
        if event.digit == "#":
            self.last_digit_at.setdefault(event.call_id, event.at)

    async def on_ledger(self, msg: Msg) -> None:
        event = decode_event(msg.data)
        if isinstance(event, LoggedOut):
            self.seated.pop(event.desk, None)
        if not isinstance(event, LoggedIn | Roamed):
            return
        self.seated[event.desk] = event.user
        if event.cause.call_id:
            self.ledger_at[event.cause.call_id] = event.at
            self.arrivals.append(time.monotonic())


@dataclass
class Step:
    """One rate step's figures."""

    offered_per_second: float
    calls: int
    successful: int
    failed: int
    logins_in_ledger: int
    completed_per_second: float
    wall_seconds: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_samples: int
    jitter_p99_ms: float
    jitter_packets: int
    other_digits: list[str]
    """What the edge heard on calls whose keys were not the PIN and ``#`` (at most 5)."""
    load_average: float
    """The machine's 1-minute load average as the step ended (other work included)."""
    cpu_ms_per_login: dict[str, float]

    @property
    def held(self) -> bool:
        return (
            self.failed == 0
            and self.successful == self.calls
            and self.logins_in_ledger == self.calls
            and self.completed_per_second >= MIN_ACHIEVED_RATIO * self.offered_per_second
        )


async def scrape(url: str) -> list[tuple[float, float]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
        response.raise_for_status()
    return parse_histogram(response.text, JITTER_METRIC)


async def run_sipp(
    workdir: Path, port: int, rate: float, calls: int
) -> tuple[SippCounts, float, float]:
    """``calls`` logins at ``rate``/s; SIPp stops by itself (``-m``, ``-timeout``).

    Returns SIPp's counts, the wall time and SIPp's own CPU seconds (it shares the
    machine with the system it loads)."""
    seconds = calls / rate
    limit = math.ceil(seconds + 60)
    stat = workdir / "stat.csv"
    cmd = [
        sipp_binary(),
        f"{HOST}:{port}",
        "-sf",
        str(workdir / "login.xml"),
        "-inf",
        str(workdir / "logins.csv"),
        "-i",
        HOST,
        "-p",
        str(free_port()),
        "-mp",
        str(free_port()),
        "-m",
        str(calls),
        "-r",
        f"{rate:g}",
        "-l",
        str(max(100, int(rate * 40))),
        "-timeout",
        f"{limit}s",
        "-timeout_error",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-trace_err",
        "-nostdin",
    ]
    started = time.monotonic()
    children_before = _children_cpu()
    with (workdir / "sipp.out").open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, cwd=workdir
        )
        try:
            await asyncio.wait_for(proc.wait(), limit + 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    wall = time.monotonic() - started
    sipp_cpu = _children_cpu() - children_before
    if not stat.exists():
        tail = (workdir / "sipp.out").read_text(errors="replace")[-1500:]
        raise SippError(f"SIPp exited with {proc.returncode} and no statistics: {tail}")
    return parse_stat(stat.read_text()), wall, sipp_cpu


def _children_cpu() -> float:
    """CPU seconds of this process's ended and reaped children (SIPp, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Bench:
    system: RunningSystem
    observed: Observed
    workdir: Path
    desks: list[tuple[str, str]]
    users: list[str]
    next_call: int = 0

    async def step(self, rate: float, seconds: float, name: str) -> Step:
        calls = max(1, round(rate * seconds))
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "login.xml").write_text(scenario_xml(PIN + "#"))
        logins = plan(self.desks, self.users, self.next_call, calls, self.observed.seated)
        self.next_call += calls
        (workdir / "logins.csv").write_text(injection_file(logins))
        self.observed.last_digit_at.clear()
        self.observed.digits.clear()
        self.observed.ledger_at.clear()
        self.observed.arrivals.clear()
        jitter_before = await scrape(self.system.edge_metrics_url)
        cpu_before = self.system.cpu()
        counts, wall, sipp_cpu = await run_sipp(workdir, self.system.sip_port, rate, calls)
        await asyncio.sleep(0.5)  # the last ledger events reach the harness
        cpu_after = self.system.cpu()
        jitter = buckets_delta(await scrape(self.system.edge_metrics_url), jitter_before)
        latencies = digit_to_ledger_ms(self.observed.last_digit_at, self.observed.ledger_at)
        in_ledger = len(self.observed.ledger_at)
        per_login = max(1, in_ledger)
        return Step(
            offered_per_second=rate,
            calls=calls,
            successful=counts.successful,
            failed=counts.failed,
            logins_in_ledger=in_ledger,
            completed_per_second=round(completion_rate(self.observed.arrivals), 2),
            wall_seconds=round(wall, 1),
            latency_p50_ms=round(quantile(latencies, 0.5), 1),
            latency_p99_ms=round(quantile(latencies, 0.99), 1),
            latency_samples=len(latencies),
            jitter_p99_ms=round(bucket_quantile(jitter, 0.99) * 1000, 2),
            jitter_packets=int(jitter[-1][1]) if jitter else 0,
            other_digits=[d for d in self.observed.digits.values() if d != PIN + "#"][:5],
            load_average=round(os.getloadavg()[0], 2),
            cpu_ms_per_login={
                **{
                    k: round((cpu_after[k] - cpu_before[k]) * 1000 / per_login, 1)
                    for k in cpu_after
                },
                "sipp": round(sipp_cpu * 1000 / per_login, 1),
            },
        )


def argon2_cpu_ms(pin_hash: str, pepper: str = "", rounds: int = 5) -> float:
    """CPU (all threads) of one PIN check against ``pin_hash``, measured here."""
    started = time.process_time()
    for _ in range(rounds):
        if not pins.verify_pin_hash(pin_hash, PIN, pepper):
            raise ValueError("the benchmark's PIN hash does not check its PIN")
    return (time.process_time() - started) * 1000 / rounds


def describe(step: Step) -> str:
    return (
        f"{step.offered_per_second:g}/s offered: {step.successful}/{step.calls} calls ok, "
        f"{step.logins_in_ledger} in ledger, {step.completed_per_second}/s completed, "
        f"digit->ledger p50 {step.latency_p50_ms} ms p99 {step.latency_p99_ms} ms, "
        f"jitter p99 {step.jitter_p99_ms} ms, CPU ms/login {step.cpu_ms_per_login}, "
        f"load {step.load_average}"
        + (f", other keys heard: {step.other_digits}" if step.other_digits else "")
    )


@dataclass(frozen=True)
class HashProfile:
    """How the users' PIN hashes are made: the argon2 parameters decide what one PIN
    check costs the IVR."""

    name: str
    description: str
    rates: tuple[float, ...]
    pepper: str = ""
    """Given to the IVR as ``pins.pepper``; with it the hashes are what ``hotdesk
    hash-pin`` makes. Without it, argon2-cffi's defaults (older releases' PIN hashes)."""

    def hash(self, pin: str) -> str:
        if self.pepper:
            return pins.hash_pin(pin, self.pepper)
        return argon2.PasswordHasher().hash(pin)


PROFILES = [
    HashProfile(
        "peppered-pin-profile",
        "PIN hashes as hotdesk hash-pin makes them: HMAC-SHA256 under pins.pepper, then "
        "argon2id m=4 MiB, t=1, p=1",
        (10, 20, 30, 40, 50, 60, 75),
        pepper=secrets.token_hex(16),
    ),
    HashProfile(
        "legacy-argon2-defaults",
        "PIN hashes as releases before the pepper made them (argon2-cffi defaults, RFC 9106 "
        "low-memory option: argon2id m=64 MiB, t=3, p=4); they keep working",
        (1, 2, 3, 4, 5, 6, 8),
    ),
]
