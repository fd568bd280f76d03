"""Run the scale-out benchmark: ``python -m bench scale [--rate 8] [--seconds 45]``.

One machine, the production topology: a 3-node nats-server cluster with every stream,
KV bucket and object store at R3, and hotdesk's services as separate processes
(``hotdesk run <service>``). SIPp desks log in (REGISTER, ``*77*<ext>*``, the PIN as
RFC 2833 events, the confirmation, the edge's BYE) at one fixed offered rate in three
phases, measured in the same run:

1. ``one-of-each``: one edge, IVR, provisioner and presence;
2. ``two-of-each``: a second instance of every service started beside the first (the
   load split over both edges);
3. ``kill``: the same, and a third of the way in the NATS node leading the ledger
   stream and one instance of every service (one edge among them) are SIGKILLed; the
   dead edge's desks move to the other edge.

Each phase reports logins/s completed, the outcome of every call (completed, a spoken
or SIP error, cut off with its edge, or unclean), PIN '#' to ledger latency, CPU per
login of each service and of nats-server, and then audits the ledger (nothing lost,
nothing twice) and waits for presence's read models to equal a fold of it.

The PIN hashes are what ``hotdesk hash-pin`` makes (HMAC-SHA256 under ``pins.pepper``,
then argon2id m=4 MiB, t=1, p=1), the logins benchmark's ``peppered-pin-profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.register.sipp import SippError
from bench.register.targets import users as desk_credentials
from hotdesk_runtime import pins

from .chart import chart
from .load import SippFailed
from .run import CALL_SECONDS_BOUND, OUTCOMES, PIN, observed
from .system import SERVICES, SystemUnavailable, running

RESULTS = Path(__file__).resolve().parent.parent / "results"
RATE = 32.0
"""Near what one of each holds on the 2-core machine the figures come from."""
SECONDS = 45.0
WARM_UP_SECONDS = 10.0
POOLS = 3
"""Desk pools: one per SIPp load (two per phase), and one for the desks that move off a
killed edge."""
PIN_PROFILE = (
    "PIN hashes as `hotdesk hash-pin` makes them: HMAC-SHA256 under pins.pepper, then "
    "argon2id m=4 MiB, t=1, p=1 (the logins benchmark's peppered-pin-profile)"
)


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The short text summary written next to the JSON."""
    phases = results["phases"]
    lines = [
        f"scale-out on one machine ({results['machine']['cpus']} cores, shared), {results['when']}",
        f"offered {results['setup']['offered_per_second']:g} logins/s, "
        f"{results['setup']['phase_seconds']:g} s per phase; {PIN_PROFILE}",
    ]
    for name in ("one-of-each", "two-of-each", "kill"):
        p = phases.get(name)
        if p is None:
            continue
        outcomes = ", ".join(f"{k} {p['outcomes'].get(k, 0)}" for k in OUTCOMES)
        if p.get("heard"):
            outcomes += "; heard: " + ", ".join(f"{k} x{n}" for k, n in p["heard"].items())
        cpu = ", ".join(f"{k} {v:g}" for k, v in p["cpu_ms_per_login"].items())
        lines.append(
            f"{name}: {p['completed_per_second']:g} logins/s completed of {p['calls']} calls "
            f"({outcomes}); '#'->ledger p50 {p['latency_p50_ms']} ms p99 "
            f"{p['latency_p99_ms']} ms; CPU ms/login: {cpu}"
        )
    kill = phases.get("kill")
    if kill is not None:
        k = kill["kill"] or {}
        lines.append(
            f"kill: SIGKILLed {k.get('nats_node')} (the ledger's leader) and "
            f"{', '.join(k.get('instances', []))}; {kill['completed_after_kill']} logins "
            f"reached the ledger after it; {kill['completed_already_seated']} confirmed calls "
            f"logged in a user who already sat there; lost {len(kill['lost'])}, duplicated "
            f"{len(kill['audit'].get('calls_logged_in_twice', []))}, duplicate Nats-Msg-Ids "
            f"{len(kill['audit'].get('duplicate_msg_ids', []))}, broken desk chains "
            f"{len(kill['audit'].get('broken_desk_chains', []))}; read models "
            f"{'equal the ledger' if kill['read_models_converged'] else 'DIFFER'} after "
            f"{kill['convergence_seconds']} s"
        )
        window = kill.get("failed_calls_started_s")
        if window:
            lines.append(
                f"kill: calls turned away (spoken or SIP error) started {window[0]:g} s to "
                f"{window[1]:g} s after it"
            )
    one, two = phases.get("one-of-each"), phases.get("two-of-each")
    if one and two and one["completed_per_second"]:
        ratio = two["completed_per_second"] / one["completed_per_second"]
        lines.append(f"two of everything vs one: {ratio:.2f}x logins/s")
    return lines


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    # Per pool: what one of the two loads (half the rate) needs so no desk has two calls.
    pool = max(10, math.ceil(args.rate / (POOLS - 1) * CALL_SECONDS_BOUND))
    desks = desk_credentials(pool * POOLS)
    users = [str(40000 + n) for n in range(2 * len(desks))]
    pepper = secrets.token_hex(16)
    pin_hash = pins.hash_pin(PIN, pepper)
    started = time.process_time()
    for _ in range(5):
        if not pins.verify_pin_hash(pin_hash, PIN, pepper):
            raise RuntimeError("the benchmark's PIN hash does not check its PIN")
    pin_check_ms = (time.process_time() - started) * 1000 / 5
    results: dict[str, Any] = {
        "benchmark": "scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": list(os.getloadavg()),
            "note": "shared with other work while measured: CPU per login is the steadier figure",
        },
        "setup": {
            "nats": "3 nats-server nodes clustered over loopback routes, JetStream; every "
            "stream, KV bucket and object store at R3 (nats.replicas = 3)",
            "processes": "hotdesk run <service> per instance, one config file, ports per "
            "instance by HOTDESK_* variables; the IVRs get pins.pepper",
            "scenario": "per call: REGISTER (401) + INVITE *77*<ext>* (407) + RFC 2833 PIN "
            "and # replayed by SIPp, 300 ms apart; the edge's BYE after the confirmation; "
            "check-sync NOTIFYs answered 200 by the desk",
            "load": "two SIPp processes at half the offered rate each, each with desks of its "
            "own, both on the one edge or one per edge; a killed edge's desks move to the other",
            "pin_hashes": PIN_PROFILE,
            "pin_check_cpu_ms": round(pin_check_ms, 1),
            "offered_per_second": args.rate,
            "phase_seconds": args.seconds,
            "desks": len(desks),
            "users": len(users),
            "outcomes": {
                "completed": "the IVR confirmed the login (after its ledger append) and the "
                "edge hung up",
                "spoken_error": "the edge hung up after another prompt (error, wrong PIN, or "
                "the edge's own error prompt when no IVR answers)",
                "sip_error": "a SIP error response to the REGISTER or INVITE (e.g. 503 with "
                "Retry-After while a store is unavailable)",
                "died_with_edge": "the call was up on the edge that was killed",
                "unclean": "anything else (silence on a live edge): must be 0",
            },
            "latency": "the edge's DtmfReceived '#' to the LoggedIn/Roamed event reaching an "
            "observer, per call",
            "cpu": "utime+stime from /proc of every instance of a service (killed ones up to "
            "their death), per completed login",
        },
        "phases": {},
    }
    async with (
        running(workdir / "system", desks, users, pin_hash, pepper=pepper) as system,
        observed(system, workdir, desks, users) as scale,
    ):
        print("== warm-up", flush=True)
        warm = await scale.phase("warm-up", min(2.0, args.rate), WARM_UP_SECONDS)
        results["phases"]["warm-up"] = warm.as_json()
        print("== one of each service", flush=True)
        one = await scale.phase("one-of-each", args.rate, args.seconds)
        results["phases"]["one-of-each"] = one.as_json()
        print("== a second instance of every service", flush=True)
        await asyncio.gather(*(system.add(s) for s in SERVICES))
        await asyncio.sleep(2)  # the new instances' subscriptions are in place
        two = await scale.phase("two-of-each", args.rate, args.seconds)
        results["phases"]["two-of-each"] = two.as_json()
        print("== kill one NATS node and one instance of every service", flush=True)
        kill = await scale.phase("kill", args.rate, args.seconds, kill_at=args.seconds / 3)
        results["phases"]["kill"] = kill.as_json()
    results["summary"] = summary_lines(results)
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--rate", type=float, default=RATE, help="offered logins/s")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="length of each phase")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep SIPp's and the services' logs here"
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds < 6:
        parser.error("--rate must be positive and --seconds at least 6")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        try:
            results = asyncio.run(run(args, args.workdir or Path(tmp)))
        except (SystemUnavailable, SippError, SippFailed) as exc:
            print(f"scale benchmark could not run: {exc}", flush=True)
            return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / "scale.txt").write_text("\n".join(results["summary"]) + "\n")
    chart(results, args.out / "scale.png")
    print("\n".join(results["summary"]), flush=True)
    print(f"wrote {args.out / 'scale.json'}, scale.txt and scale.png", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
