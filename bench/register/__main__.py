"""Run the REGISTER benchmark: ``python -m bench.register [options]``.

Without options: Kamailio with one worker, the hotdesk edge, and Kamailio with its
default workers all run side by side; at each rate step they take turns, each
climbing until a step does not hold. A target that cannot run (the edge before it is
written) is recorded as not available; the run still writes the others' figures and
exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.kamailio import KamailioError
from bench.kamailio import binary as kamailio_binary

from .chart import chart
from .figures import MAX_FAILURE_RATIO, MIN_ACHIEVED_RATIO, Step, ratio, step_from_run, summarise
from .sipp import SippError, injection_file, run_step
from .targets import (
    ExternalTarget,
    HotdeskEdgeTarget,
    KamailioTarget,
    Registrar,
    Target,
    TargetUnavailable,
    check_registers,
    cpu_seconds,
    users,
)

RESULTS = Path(__file__).resolve().parent.parent / "results"
RATES = [
    250,
    500,
    1000,
    1500,
    2000,
    2500,
    3000,
    4000,
    5000,
    6000,
    7000,
    8000,
    10000,
    12000,
    14000,
    16000,
    20000,
]
STEP_SECONDS = 4
USERS = 1000
TARGET_PER_SECOND = 2000
"""The goal for the edge: authenticated REGISTER/s on one core."""
PAUSE_SECONDS = 0.5
"""Between steps, so one step's late answers do not land in the next."""

BUILTIN: dict[str, Target] = {
    "kamailio": KamailioTarget("kamailio", children=1),
    "hotdesk-edge": HotdeskEdgeTarget(),
    "kamailio-default": KamailioTarget("kamailio-default", children=None),
}


@dataclass
class Climb:
    """One registrar's way up the rate steps."""

    target: Target
    registrar: Registrar
    workdir: Path
    steps: list[Step] = field(default_factory=list)
    retried: list[Step] = field(default_factory=list)
    stopped_by: str = ""

    @property
    def climbing(self) -> bool:
        return not self.stopped_by


def start_targets(
    chosen: Sequence[Target],
    stack: contextlib.ExitStack,
    workdir: Path,
    user_list: Sequence[tuple[str, str]],
    users_csv: Path,
) -> tuple[list[Climb], dict[str, str]]:
    """Start every target (stopped when ``stack`` closes) and check that it registers
    the users; the ones that cannot run come back with the reason."""
    climbs: list[Climb] = []
    unavailable: dict[str, str] = {}
    for target in chosen:
        print(f"== {target.name}: {target.description}", flush=True)
        own = contextlib.ExitStack()
        try:
            registrar = own.enter_context(target.running(workdir / target.name, user_list))
            check_registers(registrar, workdir / target.name, users_csv, timeout=20)
        except (TargetUnavailable, SippError) as exc:
            own.close()
            reason = str(exc).strip() or type(exc).__name__
            print(f"   {target.name}: not available: {reason[:300]}", flush=True)
            unavailable[target.name] = reason
            continue
        stack.callback(own.close)
        climbs.append(Climb(target, registrar, workdir / target.name))
    return climbs, unavailable


def climb(
    climbs: Sequence[Climb], users_csv: Path, rates: Sequence[int], step_seconds: float
) -> None:
    """At each rate, every registrar still climbing takes its turn (so a busy moment on
    a shared machine hits them alike), until each has a step that does not hold.

    A step that does not hold is run once more before that registrar stops: a moment's
    preemption drops UDP packets for reasons of its own. The first attempt of a step
    tried twice is kept in ``retried``.
    """
    for rate in rates:
        for c in climbs:
            if not c.climbing:
                continue
            try:
                step = one_step(c, users_csv, rate, step_seconds, c.target.name)
                if not step.holds:
                    c.retried.append(step)
                    time.sleep(PAUSE_SECONDS * 2)
                    step = one_step(c, users_csv, rate, step_seconds, c.target.name + " again")
            except SippError as exc:
                c.stopped_by = f"SIPp failed at {rate}/s: {exc}"
                continue
            c.steps.append(step)
            if not step.holds:
                c.stopped_by = f"{rate}/s did not hold"
            time.sleep(PAUSE_SECONDS)
        if not any(c.climbing for c in climbs):
            return
    for c in climbs:
        if c.climbing:
            c.stopped_by = "highest rate tried"


def one_step(c: Climb, users_csv: Path, rate: int, step_seconds: float, label: str) -> Step:
    """One rate step, with the registrar's CPU time read around it."""
    registrar = c.registrar
    calls = max(1, round(rate * step_seconds))
    before = cpu_seconds(registrar.pids())
    helpers_before = cpu_seconds(registrar.helper_pids())
    run = run_step(
        c.workdir / f"step-{rate}",
        registrar.host,
        registrar.port,
        rate,
        calls,
        users_csv,
        max_seconds=step_seconds * 3 + 10,
    )
    step = step_from_run(
        rate,
        run,
        cpu_seconds(registrar.pids()) - before,
        cpu_seconds(registrar.helper_pids()) - helpers_before,
        round(os.getloadavg()[0], 2),
    )
    print(
        f"  {label:24} {rate:6d}/s offered {step.achieved_rate:8.0f}/s done  "
        f"failed {step.failed:5d}/{step.calls:<6d} p99 {step.p99_ms:5.0f} ms  "
        f"cpu {step.cpu_us_per_register:6.1f} us/REGISTER  "
        f"sipp cpu {step.generator_cpu_seconds:4.1f} s  load {step.load_average:4.1f}"
        + ("" if step.holds else "  <- does not hold")
        + ("  (SIPp busy: generator-bound)" if step.generator_bound else ""),
        flush=True,
    )
    return step


def figures(c: Climb) -> dict[str, Any]:
    return {
        "available": True,
        "description": c.target.description,
        "summary": asdict(summarise(c.steps)),
        "steps": [s.as_dict() for s in c.steps],
        "retried_steps": [s.as_dict() for s in c.retried],
        "stopped_by": c.stopped_by,
        "notes": c.registrar.notes,
    }


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (out.stdout + out.stderr).decode(errors="replace").strip()
    return text.splitlines()[0].strip() if text else ""


def _kamailio_version() -> str:
    try:
        return _version([kamailio_binary(), "-v"])
    except KamailioError:
        return "not installed"


def compare(targets: dict[str, dict[str, Any]], edge: str, peer: str) -> dict[str, Any]:
    """Edge / peer: rate ratio (higher is better), CPU ratio (lower is better)."""
    e, p = targets.get(edge, {}), targets.get(peer, {})
    if not e.get("available") or not p.get("available"):
        missing = edge if not e.get("available") else peer
        return {"peer": peer, "note": f"{missing}: not available"}
    es, ps = e["summary"], p["summary"]
    return {
        "peer": peer,
        "max_rate": ratio(es["max_rate"], ps["max_rate"]),
        "registers_per_cpu_second": ratio(
            es["registers_per_cpu_second"], ps["registers_per_cpu_second"]
        ),
        "cpu_per_register": ratio(es["cpu_us_per_register"], ps["cpu_us_per_register"]),
        "p99_ms": ratio(es["p99_ms"], ps["p99_ms"]),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.register", description=__doc__)
    parser.add_argument(
        "--targets",
        default=",".join(BUILTIN),
        help=f"comma-separated, from {', '.join(BUILTIN)} (default: all)",
    )
    parser.add_argument(
        "--registrar",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT[:PID]",
        help="also load a registrar already running on this machine that knows the users",
    )
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="rate steps, per s")
    parser.add_argument("--step-seconds", type=float, default=STEP_SECONDS)
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the figures go")
    parser.add_argument(
        "--write-users", type=Path, help="write the users (name,password CSV) here and stop"
    )
    return parser.parse_args(argv)


def external(spec: str) -> ExternalTarget:
    name, _, address = spec.partition("=")
    parts = address.split(":")
    if not name or len(parts) not in (2, 3):
        raise SystemExit(f"--registrar {spec!r}: expected NAME=HOST:PORT[:PID]")
    pid = int(parts[2]) if len(parts) == 3 else None
    return ExternalTarget(name, parts[0], int(parts[1]), pid)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    user_list = users(args.users)
    if args.write_users:
        args.write_users.write_text("".join(f"{n},{p}\n" for n, p in user_list))
        return 0
    chosen: list[Target] = []
    for name in filter(None, args.targets.split(",")):
        if name not in BUILTIN:
            raise SystemExit(f"unknown target {name!r}: choose from {', '.join(BUILTIN)}")
        chosen.append(BUILTIN[name])
    chosen += [external(spec) for spec in args.registrar]
    rates = [int(r) for r in args.rates.split(",") if r]
    args.output.mkdir(parents=True, exist_ok=True)
    targets: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hotdesk-bench-register-") as tmp:
        workdir = Path(tmp)
        users_csv = workdir / "users.csv"
        users_csv.write_text(injection_file(user_list))
        with contextlib.ExitStack() as stack:
            climbs, unavailable = start_targets(chosen, stack, workdir, user_list, users_csv)
            climb(climbs, users_csv, rates, args.step_seconds)
        for target in chosen:
            if target.name in unavailable:
                targets[target.name] = {
                    "available": False,
                    "description": target.description,
                    "reason": unavailable[target.name],
                }
        targets.update({c.target.name: figures(c) for c in climbs})
        targets = {t.name: targets[t.name] for t in chosen}
    edge = targets.get("hotdesk-edge")
    results: dict[str, Any] = {
        "benchmark": "register",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "kamailio": _kamailio_version(),
            "sipp": _version(["sipp", "-v"]),
        },
        "setup": {
            "users": args.users,
            "step_seconds": args.step_seconds,
            "rates": rates,
            "transport": "UDP on 127.0.0.1",
            "target_per_second": TARGET_PER_SECOND,
            "holds_when": f"failures < {MAX_FAILURE_RATIO:.1%} and completed >= "
            f"{MIN_ACHIEVED_RATIO:.0%} of the offered rate",
            "delay": "first REGISTER -> 200 OK, the 401 round trip included; SIPp "
            "measures whole milliseconds and adds its own scheduling (a few ms)",
            "cpu": "utime + stime of the registrar's processes during the step, per "
            "successful registration (two requests: the challenged one and the "
            "authenticated one)",
            "note": "SIPp runs on the same machine and shares its cores with the registrar",
        },
        "targets": targets,
        "edge": "available"
        if edge and edge.get("available")
        else f"not available: {edge['reason'] if edge else 'not run'}",
        "ratio_edge_vs_kamailio": compare(targets, "hotdesk-edge", "kamailio"),
    }
    (args.output / "register.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, args.output / "register.png")
    for name, figures_of in targets.items():
        if not figures_of["available"]:
            print(f"{name:18} not available")
            continue
        s = figures_of["summary"]
        rate = f"{s['max_rate']}/s" if s["max_rate"] else "none"
        bound = "" if s["saturated"] else " (did not saturate: a lower bound)"
        print(
            f"{name:18} holds up to {rate}{bound}; p99 {s['p99_ms']} ms; "
            f"{s['cpu_us_per_register'] or float('nan'):.1f} us CPU/REGISTER "
            f"= {s['registers_per_cpu_second'] or 0:.0f} REGISTER/s per core"
        )
    print(f"edge/kamailio: {results['ratio_edge_vs_kamailio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
