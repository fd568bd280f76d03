"""Load phases against a :class:`~bench.scale.system.ScaleSystem`, and what became of
every call.

A phase offers logins at a fixed rate for a fixed time: two
:class:`~bench.scale.load.SippLoad` processes at half the rate each, each with desks of
its own, spread over the live edges (both on the one edge, or one per edge). In a kill
phase, one NATS node (the ledger stream's leader) and one instance of every service
(one of them an edge) are SIGKILLed at ``kill_at`` seconds; the dead edge's load stops
placing calls and the rest of its share goes to a live edge, as phones move to the
server that still answers.

Every call SIPp placed ends in one of these :data:`OUTCOMES`:

``completed``
    the IVR confirmed the login (after its ledger append) and the edge hung up;
``spoken_error``
    the edge hung up after a prompt other than the confirmation: the IVR's (error,
    wrong PIN, ...) or, with no IVR answering, the edge's own error prompt;
``sip_error``
    SIPp got a SIP error response (4xx-6xx other than the digest challenges);
``died_with_edge``
    the call was on the edge that was killed, and was cut off with it (no BYE, no
    response): what a phone sees when its server's machine dies;
``unclean``
    anything else: a call that went silent on a live edge, or ended without a prompt.

A completed call without its login in the ledger is ``lost``; a call with two logins
in the ledger is a duplicate (see :mod:`bench.scale.audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from bench.logins.figures import completion_rate, quantile
from bench.logins.scenario import Login, plan
from hotdesk_contracts import streams
from hotdesk_contracts.events import LedgerEvent, LoggedIn, LoggedOut, Roamed

from .audit import LedgerAudit, Stored, audit_ledger, converged, read_ledger
from .load import CallSeen, SippLoad
from .observe import CallTrace, Observer
from .system import SERVICES, Instance, ScaleSystem

OUTCOMES = ("completed", "spoken_error", "sip_error", "died_with_edge", "unclean")
CALL_SECONDS_BOUND = 30.0
"""A desk is used again only after this long (its calls must not overlap)."""
PIN = "2468"
DIGITS = PIN + "#"
BYE_TIMEOUT_MS = 30_000
"""How long a SIPp desk waits for the edge's BYE after its last key: longer than any
IVR flow takes to end a call (three wrong-PIN rounds, or the edge's wait for a silent
IVR), so a call that gets no BYE was really cut off."""


@dataclass
class Kill:
    """What a kill phase killed, and when (harness monotonic and wall-clock time)."""

    at_monotonic: float
    at_epoch: float
    nats_node: str
    instances: list[str]


@dataclass
class CallResult:
    call_id: str
    load: str
    edge_port: int
    outcome: str
    said: list[str]
    """The last prompts played (the IVR's), or ``["<edge error prompt>"]``."""
    in_ledger: int
    """LoggedIn/Roamed events in the ledger caused by this call."""
    started_epoch: float


@dataclass
class PhaseResult:
    name: str
    instances: dict[str, int]
    offered_per_second: float
    seconds: float
    calls: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    heard: dict[str, int] = field(default_factory=dict)
    """What the calls that did not complete were told last (prompt ids, "SIP 503"...)."""
    lost: list[str] = field(default_factory=list)
    """Completed calls whose login is not in the ledger (neither an event of theirs nor
    the user already sitting at the desk)."""
    completed_already_seated: int = 0
    """Completed calls that logged in the user who already sat there: the ledger takes
    that as done and appends nothing (a desk's earlier call failed, so the plan's
    alternation of its two users was off by one)."""
    logins_in_ledger_not_confirmed: int = 0
    """Calls whose login is in the ledger although the caller did not hear it confirmed
    (the instance died, or the append's answer was lost, after the write)."""
    completed_per_second: float = 0.0
    completed_after_kill: int = 0
    failed_calls_started_s: list[float] = field(default_factory=list)
    """First and last start of a call that failed (spoken or SIP error), in seconds
    after the kill: the window callers were turned away in."""
    latency_p50_ms: float = math.nan
    latency_p99_ms: float = math.nan
    cpu_ms_per_login: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    kill: Kill | None = None
    audit: dict[str, Any] = field(default_factory=dict)
    read_models_converged: bool = False
    convergence_seconds: float = 0.0
    read_model_differences: list[str] = field(default_factory=list)
    problems: list[CallResult] = field(default_factory=list)
    """Calls that were unclean or lost (with what was known of them)."""

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("problems", "kill")}
        for key in ("latency_p50_ms", "latency_p99_ms"):
            out[key] = out[key] if math.isfinite(out[key]) else None
        out["kill"] = self.kill.__dict__ if self.kill else None
        out["problems"] = [p.__dict__ for p in self.problems]
        return out


KILL_GRACE_SECONDS = 1.0
"""Calls SIPp started this soon after its edge was killed count as cut off with it."""


def classify(
    seen: CallSeen, trace: CallTrace | None, *, edge_killed_at: float | None
) -> tuple[str, list[str]]:
    """A call's outcome (see the module docstring) and what it was told last;
    ``edge_killed_at`` is the wall-clock time the call's edge was killed, if it was."""
    said: list[str] = []
    if trace is not None:
        said = list(trace.last_prompts)
        if trace.edge_spoke_on_its_own and not trace.confirmed:
            said = ["<edge error prompt>"]
    if seen.answered and seen.bye and trace is not None and trace.confirmed:
        return "completed", said
    if seen.sip_error is not None:
        return "sip_error", [f"SIP {seen.sip_error}"]
    if seen.answered and seen.bye and trace is not None and (trace.plays or trace.played):
        return "spoken_error", said
    if (
        edge_killed_at is not None
        and seen.started <= edge_killed_at + KILL_GRACE_SECONDS
        and not seen.bye
    ):
        return "died_with_edge", said
    return "unclean", said


def _already_seated(seatings: list[tuple[float, LedgerEvent]], user: str, before: float) -> bool:
    """Whether the desk's last seating event before wall-clock time ``before`` seated
    ``user`` (``seatings`` in stream order, with their event times)."""
    last: LedgerEvent | None = None
    for at, event in seatings:
        if at > before:
            break
        last = event
    return isinstance(last, LoggedIn | Roamed) and last.user == user


async def _stepdown_away_from(nc: Client, js: JetStreamContext, stream: str, keep: str) -> str:
    """Move ``stream``'s leadership off server ``keep`` (the observer's node); the
    leader's name afterwards."""
    for _ in range(50):
        info = await js.stream_info(stream)
        leader = info.cluster.leader if info.cluster else None
        if leader and leader != keep:
            return leader
        # A step-down in progress may answer late or not at all: look again.
        with contextlib.suppress(Exception):
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{stream}'s leadership did not move off {keep}")


@contextlib.asynccontextmanager
async def observed(
    system: ScaleSystem, workdir: Path, desks: list[tuple[str, str]], users: list[str]
) -> AsyncIterator[ScaleRun]:
    """A :class:`ScaleRun` whose observer is connected to the cluster's first node
    (which no phase kills)."""
    node = system.cluster.nodes[0]
    nc = await nats.connect(node.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        observer = Observer()
        await observer.subscribe(nc)
        run = ScaleRun(system, observer, nc, workdir, desks, users)
        run.observer_node = node.server_name
        yield run
    finally:
        await nc.close()


class ScaleRun:
    """Phases against one system, observed on one NATS node that is never killed."""

    def __init__(
        self,
        system: ScaleSystem,
        observer: Observer,
        nc: Client,
        workdir: Path,
        desks: list[tuple[str, str]],
        users: list[str],
        *,
        pools: int = 3,
    ) -> None:
        self.system = system
        self.observer = observer
        self.nc = nc
        self.js = nc.jetstream()
        self.workdir = workdir
        size = len(desks) // pools
        self.pools = [
            (desks[i * size : (i + 1) * size], users[2 * i * size : 2 * (i + 1) * size])
            for i in range(pools)
        ]
        self.next_call = [0] * pools
        self.loads = pools - 1
        """SIPp loads per phase, one per desk pool but the last."""
        self.observer_node = ""

    def desks_needed(self, rate: float) -> int:
        """Desks each pool needs so that no desk has two calls at once when ``rate``
        logins/s are offered."""
        return math.ceil(rate / self.loads * CALL_SECONDS_BOUND)

    async def _plan(self, pool: int, count: int) -> list[Login]:
        desks, users = self.pools[pool]
        stored, _ = await read_ledger(self.js)
        seated = {d: u for d, u in audit_ledger(stored).seated.items() if u is not None}
        logins = plan(desks, users, self.next_call[pool], count, seated)
        self.next_call[pool] += count
        return logins

    async def _load(
        self, name: str, pool: int, edge: Instance, rate: float, seconds: float
    ) -> SippLoad:
        """A load of ``rate`` x ``seconds`` logins on ``edge`` from desk pool ``pool``,
        planned now (from the ledger), started later."""
        calls = max(1, round(rate * seconds))
        return SippLoad(
            name,
            self.workdir,
            edge.sip_port,
            await self._plan(pool, calls),
            rate,
            DIGITS,
            bye_timeout_ms=BYE_TIMEOUT_MS,
        )

    async def phase(
        self,
        name: str,
        rate: float,
        seconds: float,
        *,
        kill_at: float | None = None,
        converge_timeout: float = 60.0,
    ) -> PhaseResult:
        """Offer ``rate`` logins/s for ``seconds`` over the live edges (and kill one of
        everything at ``kill_at`` s); then wait for the read models and judge every call."""
        edges = self.system.edges
        if not edges:
            raise RuntimeError("no live edge")
        if kill_at is not None and len(edges) < 2:
            raise RuntimeError("a kill phase needs a second edge to move the desks to")
        result = PhaseResult(
            name=name,
            instances={s: len(self.system.of(s)) for s in SERVICES},
            offered_per_second=rate,
            seconds=seconds,
        )
        # One SIPp per desk pool but the last (kept for the desks that move), spread
        # over the live edges: the same loads whether one edge takes them or two.
        share = rate / self.loads
        loads: list[SippLoad] = []
        edge_of_load: dict[str, Instance] = {}
        for i in range(self.loads):
            edge = edges[i % len(edges)]
            load = await self._load(f"{name}-{i + 1}-on-{edge.name}", i, edge, share, seconds)
            loads.append(load)
            edge_of_load[load.name] = edge
        moved: SippLoad | None = None
        victim_edge = edges[-1]
        if kill_at is not None:
            # Planned before the kill: the ledger is read while it has its leader.
            survivor = edges[0]
            on_victim = sum(1 for load in loads if edge_of_load[load.name] is victim_edge)
            moved = await self._load(
                f"{name}-moved-to-{survivor.name}",
                len(self.pools) - 1,
                survivor,
                share * on_victim,
                seconds - kill_at,
            )
            edge_of_load[moved.name] = survivor
        cpu_before = self.system.cpu()
        started = time.monotonic()
        for load in loads:
            await load.start()
        if kill_at is not None and moved is not None:
            await asyncio.sleep(max(0.0, started + kill_at - time.monotonic()))
            # Its phones stop calling it as it dies (they would find it gone) and call
            # the edge that still answers instead.
            for load in loads:
                if edge_of_load[load.name] is victim_edge:
                    load.stop_placing()
            result.kill = await self._kill_one_of_everything(victim_edge)
            await moved.start()
            loads.append(moved)
        for load in loads:
            await load.wait(seconds + BYE_TIMEOUT_MS / 1000 + 60)
            load.check()
        result.wall_seconds = round(time.monotonic() - started, 1)
        await asyncio.sleep(0.5)  # the last ledger events reach the observer
        cpu_after = self.system.cpu()
        stored, differences, waited = await converged(self.js, converge_timeout)
        audit = audit_ledger(stored)
        result.audit = audit.summary()
        result.read_models_converged = not differences
        result.convergence_seconds = round(waited, 1)
        result.read_model_differences = differences[:20]
        completed = self._judge(result, loads, edge_of_load, audit, stored)
        traces = [self.observer.calls[c] for c in completed if c in self.observer.calls]
        arrivals = [t.login_at for t in traces if t.login_at]
        result.completed_per_second = round(completion_rate(arrivals), 2)
        if result.kill is not None:
            result.completed_after_kill = sum(1 for a in arrivals if a > result.kill.at_monotonic)
        latencies = [
            (t.login_at - t.last_digit_at) * 1000 for t in traces if t.login_at and t.last_digit_at
        ]
        result.latency_p50_ms = round(quantile(latencies, 0.5), 1)
        result.latency_p99_ms = round(quantile(latencies, 0.99), 1)
        logins = max(1, result.outcomes.get("completed", 0))
        result.cpu_ms_per_login = {
            k: round((cpu_after[k] - cpu_before.get(k, 0.0)) * 1000 / logins, 1) for k in cpu_after
        }
        return result

    def _judge(
        self,
        result: PhaseResult,
        loads: list[SippLoad],
        edge_of_load: dict[str, Instance],
        audit: LedgerAudit,
        stored: list[Stored],
    ) -> list[str]:
        """Fill in the outcomes, lost logins and problems; the completed calls' ids."""
        seatings: dict[str, list[tuple[float, LedgerEvent]]] = {}
        for s in stored:
            if isinstance(s.event, LoggedIn | Roamed | LoggedOut):
                seatings.setdefault(s.event.desk, []).append((s.event.at.timestamp(), s.event))
        outcomes: Counter[str] = Counter({o: 0 for o in OUTCOMES})
        heard: Counter[str] = Counter()
        failed_starts: list[float] = []
        completed: list[str] = []
        kill_epoch = result.kill.at_epoch if result.kill else None
        for load in loads:
            edge = edge_of_load[load.name]
            for call_id, seen in load.calls().items():
                trace = self.observer.calls.get(call_id)
                logins = len(audit.logins_by_call.get(call_id, []))
                killed = kill_epoch if edge.killed_at is not None else None
                outcome, said = classify(seen, trace, edge_killed_at=killed)
                outcomes[outcome] += 1
                if outcome in ("spoken_error", "sip_error"):
                    heard[" + ".join(said) or "?"] += 1
                    failed_starts.append(seen.started)
                result.calls += 1
                call = CallResult(
                    call_id, load.name, edge.sip_port, outcome, said, logins, seen.started
                )
                if outcome == "completed":
                    completed.append(call_id)
                    if (
                        logins == 0
                        and trace is not None
                        and _already_seated(seatings.get(trace.desk, []), trace.user, seen.ended)
                    ):
                        result.completed_already_seated += 1
                    elif logins != 1:
                        result.lost.append(call_id)
                        result.problems.append(call)
                elif logins:
                    result.logins_in_ledger_not_confirmed += 1
                if outcome == "unclean":
                    result.problems.append(call)
        result.outcomes = dict(outcomes)
        result.heard = dict(heard.most_common())
        if kill_epoch is not None and failed_starts:
            result.failed_calls_started_s = [
                round(min(failed_starts) - kill_epoch, 1),
                round(max(failed_starts) - kill_epoch, 1),
            ]
        return completed

    async def _kill_one_of_everything(self, edge: Instance) -> Kill:
        leader = await _stepdown_away_from(
            self.nc, self.js, streams.LEDGER.name, self.observer_node
        )
        node = self.system.cluster.node(leader)
        victims = [edge] + [self.system.of(s)[0] for s in SERVICES if s != "sip-edge"]
        kill = Kill(time.monotonic(), time.time(), node.server_name, [v.name for v in victims])
        self.system.kill_node(node)
        for victim in victims:
            self.system.kill(victim)
        return kill
