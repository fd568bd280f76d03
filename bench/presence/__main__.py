"""Presence benchmark: ``python -m bench.presence``.

In one run:

* **BLF fan-out** (:mod:`.fanout`): one state change of extension 100, watched by 1,000
  digest-authenticated subscribers, through the real SIP edge: time from the BLF value
  written to the KV bucket to the last NOTIFY received, over 200 changes (target p99
  <= 100 ms), beside a bare ``sendto`` loop of the same 1,000 NOTIFYs (the floor);
* **read-model rebuild** (:mod:`.rebuild`): a fresh nats-server filled with 1,000,000
  seating events over 2,000 desks and 5,000 users (:mod:`.ledger_fill`), then
  ``ProjectionRunner.rebuild`` of the presence projections, each in its own process
  (events/s, peak RSS growth), beside a raw nats-py ordered consumer that only counts.

Figures go to ``bench/results/presence.json`` and a chart to ``bench/results/presence.png``.
``--fanout-only`` measures the fan-out alone and keeps the rebuild figures of the last
full run (with that run's date) in the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats

from hotdesk_runtime.nats import ensure_jetstream
from tests.support.natsserver import NatsServer

from . import fanout
from .ledger_fill import fill

RESULTS = Path(__file__).resolve().parent.parent / "results"
LEDGER_EVENTS = 1_000_000
DESKS = 2000
USERS = 5000
SERVICE_SETTINGS = {"batch_size": 1000, "write_concurrency": 256}
"""What ``hotdesk rebuild`` and the presence service run with (the runner's defaults)."""
LARGE_BATCHES = {"batch_size": 20_000, "write_concurrency": 1024}
"""Larger batches, as an operator could choose for a one-off rebuild."""
REBUILDS: list[tuple[str, str, dict[str, int]]] = [
    ("desks", "desks", SERVICE_SETTINGS),
    ("desks_large_batches", "desks", LARGE_BATCHES),
    ("users_large_batches", "users", LARGE_BATCHES),
    ("history_large_batches", "history", LARGE_BATCHES),
]
TARGET_P99_MS = 100.0


async def measure(url: str, what: str, settings: dict[str, int] | None = None) -> dict[str, Any]:
    """Run one :mod:`.rebuild` measurement in a child process; its JSON result."""
    args = ["--url", url, "--what", what]
    for name, value in (settings or {}).items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.presence.rebuild",
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 600)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode:
        raise RuntimeError(f"rebuild of {what} exited {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    if settings:
        result["settings"] = settings
    return result


async def bench_rebuild() -> dict[str, Any]:
    """Fill a fresh ledger, then measure the raw peer and every rebuild."""
    server = NatsServer().start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream(timeout=30)
        await ensure_jetstream(js)
        print(f"filling the ledger with {LEDGER_EVENTS:,} events ...", flush=True)
        out: dict[str, Any] = {
            "desks": DESKS,
            "users": USERS,
            "fill": await fill(nc, js, LEDGER_EVENTS, DESKS, USERS),
        }
        await nc.close()
        print(json.dumps(out["fill"]), flush=True)
        out["raw_ordered_consumer"] = await measure(server.url, "raw")
        print("raw", json.dumps(out["raw_ordered_consumer"]), flush=True)
        raw_rate = out["raw_ordered_consumer"]["per_s"]
        for label, what, settings in REBUILDS:
            result = await measure(server.url, what, settings)
            if result["events"] != out["fill"]["events"]:
                raise RuntimeError(f"{label}: applied {result['events']} of {out['fill']}")
            result["ratio_to_raw"] = result["per_s"] / raw_rate
            out[label] = result
            print(label, json.dumps(result), flush=True)
        return out
    finally:
        server.close()


async def run(*, rebuild: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "loop": type(asyncio.get_running_loop()).__module__,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
    }
    print(f"BLF fan-out to {fanout.SUBSCRIBERS} subscribers ...", flush=True)
    results["blf_fanout"] = await fanout.run()
    f = results["blf_fanout"]
    print(
        f"edge p50 {f['edge']['p50_ms']:.1f} ms p99 {f['edge']['p99_ms']:.1f} ms, "
        f"CPU {f['edge_cpu']['per_change_ms']:.1f} ms per change; "
        f"floor p50 {f['floor_sendto']['p50_ms']:.1f} ms",
        flush=True,
    )
    if rebuild:
        results["rebuild"] = await bench_rebuild()
    results["load_average_at_end"] = os.getloadavg()[0]
    return results


def chart(results: dict[str, Any], path: Path) -> None:
    """Two panels: fan-out latency per round (edge vs floor), rebuild rates vs raw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, r = results["blf_fanout"], results["rebuild"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    ax = axes[0]
    edge = [x["last_ms"] for x in f["edge"]["rounds_ms"]]
    floor = [x["last_ms"] for x in f["floor_sendto"]["rounds_ms"]]
    ax.plot(range(1, len(edge) + 1), edge, "o-", label="real edge (KV write -> last NOTIFY)")
    ax.plot(range(1, len(floor) + 1), floor, "s-", label="bare sendto of the same NOTIFYs")
    ax.axhline(TARGET_P99_MS, color="tab:red", linestyle="--", label="target p99")
    ax.set_xlabel("state change")
    ax.set_ylabel("ms to the last of 1,000 NOTIFYs received")
    ax.set_ylim(0, max([*edge, *floor, TARGET_P99_MS]) * 1.35)  # room for the legend
    ax.set_title(
        f"BLF fan-out to {f['subscribers']:,}: edge p50 {f['edge']['p50_ms']:.0f} / "
        f"p99 {f['edge']['p99_ms']:.0f} ms ({f['edge_cpu']['per_change_ms']:.0f} ms CPU "
        f"per change), floor p50 {f['floor_sendto']['p50_ms']:.0f} ms",
        fontsize=10,
    )
    ax.legend(loc="upper right")
    ax = axes[1]
    labels = ["raw ordered\nconsumer"]
    rates = [r["raw_ordered_consumer"]["per_s"]]
    peaks = [r["raw_ordered_consumer"]["peak_growth_kb"] / 1024]
    for label, _, _ in REBUILDS:
        if label in r:
            labels.append(
                label.replace("_large_batches", "\n(20k batches)")
                if label != "desks"
                else "desks\n(service: 1k batches)"
            )
            rates.append(r[label]["per_s"])
            peaks.append(r[label]["peak_growth_kb"] / 1024)
    bars = ax.bar(labels, rates, color=["tab:gray"] + ["tab:green"] * (len(labels) - 1))
    for bar, peak in zip(bars, peaks, strict=True):
        ax.annotate(
            f"+{peak:.0f} MiB peak RSS",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel("events / s")
    earlier = f" (run of {r['measured_in_run_of'][:10]})" if "measured_in_run_of" in r else ""
    ax.set_title(f"rebuild from {int(r['fill']['events']):,} ledger events{earlier}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def earlier_rebuild(path: Path) -> dict[str, Any]:
    """The rebuild figures of the last full run in ``path``, with that run's date."""
    try:
        earlier: dict[str, Any] = json.loads(path.read_text())
        rebuild: dict[str, Any] = earlier["rebuild"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(
            f"--fanout-only keeps the rebuild figures of {path}, which has none ({exc}); "
            "run the whole benchmark once"
        ) from exc
    return {**rebuild, "measured_in_run_of": rebuild.get("measured_in_run_of", earlier["when"])}


def main(argv: list[str]) -> int:
    """Run the benchmark, write the JSON figures and the chart; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m bench.presence")
    parser.add_argument(
        "--fanout-only",
        action="store_true",
        help="measure the BLF fan-out only; keep the last run's rebuild figures",
    )
    args = parser.parse_args(argv)
    rebuild = None if not args.fanout_only else earlier_rebuild(RESULTS / "presence.json")
    try:
        import uvloop

        results = uvloop.run(run(rebuild=rebuild is None))
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        results = asyncio.run(run(rebuild=rebuild is None))
    if rebuild is not None:
        results["rebuild"] = rebuild
    results["targets"] = {"blf_fanout_p99_ms": TARGET_P99_MS}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "presence.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, RESULTS / "presence.png")
    print(f"wrote {RESULTS / 'presence.json'} and {RESULTS / 'presence.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
