"""Ledger benchmark: ``python -m bench.ledger``.

In one run against a fresh nats-server (random port, temporary store):

* appends/s through :class:`~hotdesk_ledger.store.EventStore` (expected-sequence and
  message-id headers, many aggregates) against raw nats-py JetStream publishes of the
  same bytes, sequential and with concurrent tasks (target ratio >= 0.8);
* projection replay rate of :class:`~hotdesk_ledger.projection.ProjectionRunner` over
  1,000,000 ledger events into a KV read model (target >= 100,000 events/s);
* msgspec encode+decode of one event against the standard library's json.

Figures go to ``bench/results/ledger.json`` and a chart to ``bench/results/ledger.png``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.codec import decode_event, encode_event
from hotdesk_contracts.events import Cause, LedgerEvent, LoggedIn, LoggedOut, LogoutReason
from hotdesk_ledger.occupancy import DeskOccupancy
from hotdesk_ledger.projection import ProjectionRunner
from hotdesk_ledger.store import EventStore
from tests.support.natsserver import NatsServer

RESULTS = Path(__file__).resolve().parent.parent / "results"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

APPENDS = 4000
ROUNDS = 3
AGGREGATES = 500
CONCURRENCY = 32
REPLAY_EVENTS = 1_000_000
REPLAY_DESKS = 1000
CODEC_EVENTS = 100_000


def event_for(desk: str, n: int) -> LedgerEvent:
    """The n-th event of a desk: logins and logouts alternate."""
    common: dict[str, Any] = {
        "event_id": f"{desk}-{n}",
        "at": T0 + timedelta(seconds=n),
        "cause": Cause(actor="user:100", call_id=f"call-{desk}-{n}"),
        "correlation_id": f"corr-{desk}-{n}",
        "desk": desk,
        "user": f"{100 + n % 50}",
    }
    if n % 2 == 0:
        return LoggedIn(**common)
    return LoggedOut(reason=LogoutReason.USER_CODE, **common)


# --- appends ----------------------------------------------------------------------------
Item = TypeVar("Item")


def partition(items: list[tuple[str, Item]], tasks: int) -> list[list[tuple[str, Item]]]:
    """Split by aggregate (subject), evenly: each task owns whole aggregates, so the
    optimistic-concurrency appends never conflict and both sides get the same split."""
    owner: dict[str, int] = {}
    parts: list[list[tuple[str, Item]]] = [[] for _ in range(tasks)]
    for subject, item in items:
        parts[owner.setdefault(subject, len(owner) % tasks)].append((subject, item))
    return parts


async def raw_publishes(
    js: JetStreamContext, payloads: list[tuple[str, bytes]], tasks: int
) -> float:
    """Raw JetStream publishes (awaiting each ack), split over ``tasks`` tasks."""

    async def worker(part: list[tuple[str, bytes]]) -> None:
        for subject, data in part:
            await js.publish(subject, data)

    started = time.perf_counter()
    await asyncio.gather(*(worker(p) for p in partition(payloads, tasks)))
    return len(payloads) / (time.perf_counter() - started)


async def store_appends(
    store: EventStore, events: list[tuple[str, LedgerEvent]], tasks: int
) -> float:
    """Appends with optimistic concurrency; each task owns its aggregates."""

    async def worker(part: list[tuple[str, LedgerEvent]]) -> None:
        last: dict[str, int] = {}
        for subject, event in part:
            result = await store.append(subject, [event], last.get(subject, 0))
            last[subject] = result.last_seq

    started = time.perf_counter()
    await asyncio.gather(*(worker(p) for p in partition(events, tasks)))
    return len(events) / (time.perf_counter() - started)


def append_workload(prefix: str) -> list[tuple[str, LedgerEvent]]:
    return [
        (
            subjects.desk_ledger(f"{prefix}{i % AGGREGATES:04d}"),
            event_for(f"{prefix}{i % AGGREGATES:04d}", i // AGGREGATES),
        )
        for i in range(APPENDS)
    ]


async def bench_appends(js: JetStreamContext, store: EventStore) -> dict[str, float]:
    """Median of ROUNDS alternating rounds for each side, so both see the same load."""
    out: dict[str, float] = {}
    for label, tasks in (("sequential", 1), ("concurrent", CONCURRENCY)):
        raw_rates: list[float] = []
        store_rates: list[float] = []
        for round_no in range(ROUNDS):
            # Fresh desks per round, so every append starts a fresh aggregate history,
            # and the raw publishes write the very same bytes to twin subjects.
            events = append_workload(f"A{label[0].upper()}{round_no}x")
            raw = [(s.replace("desk.A", "desk.R"), encode_event(e)) for s, e in events]
            raw_rates.append(await raw_publishes(js, raw, tasks))
            store_rates.append(await store_appends(store, events, tasks))
        out[f"raw_{label}_per_s"] = statistics.median(raw_rates)
        out[f"store_{label}_per_s"] = statistics.median(store_rates)
        out[f"ratio_{label}"] = out[f"store_{label}_per_s"] / out[f"raw_{label}_per_s"]
    return out


# --- replay -----------------------------------------------------------------------------
async def fill_ledger(nc: nats.NATS, js: JetStreamContext, store: EventStore) -> float:
    """Write REPLAY_EVENTS events with plain (unacknowledged) publishes, then wait
    until the stream holds them. Returns the fill rate."""
    desks = [f"D{d:05d}" for d in range(REPLAY_DESKS)]
    templates = [
        (subjects.desk_ledger(d), encode_event(event_for(d, 0)), encode_event(event_for(d, 1)))
        for d in desks
    ]
    before = await store.last_seq()
    started = time.perf_counter()
    for i in range(REPLAY_EVENTS):
        subject, login, logout = templates[i % REPLAY_DESKS]
        await nc.publish(subject, logout if (i // REPLAY_DESKS) % 2 else login)
        if i % 20_000 == 19_999:
            await nc.flush(timeout=30)
    await nc.flush(timeout=30)
    # Plain publishes are not acknowledged and a busy server may drop some: wait a
    # bounded time, then top up with acknowledged publishes so the count is exact.
    target = before + REPLAY_EVENTS
    deadline = time.monotonic() + 30
    while (last := await store.last_seq()) < target and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for i in range(target - last):
        subject, login, _ = templates[i % REPLAY_DESKS]
        await js.publish(subject, login)
    return REPLAY_EVENTS / (time.perf_counter() - started)


async def bench_replay(nc: nats.NATS, js: JetStreamContext, store: EventStore) -> dict[str, float]:
    fill_rate = await fill_ledger(nc, js, store)
    projection = DeskOccupancy(name="bench-occupancy", bucket="bench_occupancy")
    runner = ProjectionRunner(js, projection, batch_size=50_000, write_concurrency=1024)
    await runner.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    applied = await runner.catch_up()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    model = await runner.items()
    await runner.stop()
    total_events = sum(v.events for v in model.values())
    if total_events != applied:
        raise SystemExit(f"read model folded {total_events} events, runner applied {applied}")
    return {
        "fill_per_s": fill_rate,
        "replay_events": float(applied),
        "replay_seconds": elapsed,
        "replay_per_s": applied / elapsed,
        # The client's own CPU per event: what the runner costs, whatever else the
        # (shared) machine is doing; the wall-clock rate above also depends on that.
        "replay_client_cpu_us_per_event": cpu / applied * 1e6,
        "replay_keys": float(len(model)),
    }


# --- codecs -----------------------------------------------------------------------------
def bench_codecs() -> dict[str, float]:
    events = [event_for(f"C{n % 100:04d}", n) for n in range(CODEC_EVENTS)]
    started = time.perf_counter()
    for event in events:
        decode_event(encode_event(event))
    msgspec_us = (time.perf_counter() - started) / CODEC_EVENTS * 1e6

    dicts = []
    for event in events:
        d = {f: getattr(event, f) for f in event.__struct_fields__}
        d["type"] = type(event).__name__
        d["at"] = d["at"].isoformat()
        d["cause"] = {"actor": event.cause.actor, "call_id": event.cause.call_id}
        dicts.append(d)
    started = time.perf_counter()
    for d in dicts:
        json.loads(json.dumps(d).encode())
    json_us = (time.perf_counter() - started) / CODEC_EVENTS * 1e6
    return {
        "msgspec_us_per_event": msgspec_us,
        "json_us_per_event": json_us,
        "json_over_msgspec": json_us / msgspec_us,
    }


# --- report -----------------------------------------------------------------------------
def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, r, c = results["appends"], results["replay"], results["codec"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    labels = ["sequential", f"{CONCURRENCY} tasks"]
    x = range(2)
    axes[0].bar(
        [i - 0.2 for i in x],
        [a["raw_sequential_per_s"], a["raw_concurrent_per_s"]],
        0.4,
        label="raw JetStream publish",
    )
    axes[0].bar(
        [i + 0.2 for i in x],
        [a["store_sequential_per_s"], a["store_concurrent_per_s"]],
        0.4,
        label="EventStore.append",
    )
    axes[0].set_xticks(list(x), labels)
    axes[0].set_ylabel("appends / s")
    axes[0].set_title(f"appends (ratio {a['ratio_sequential']:.2f} / {a['ratio_concurrent']:.2f})")
    axes[0].legend(loc="upper left")
    axes[1].bar(["replay", "target"], [r["replay_per_s"], 100_000], color=["tab:green", "tab:gray"])
    axes[1].set_ylabel("events / s")
    axes[1].set_title(f"projection replay of {int(r['replay_events']):,} events")
    axes[2].bar(
        ["msgspec", "stdlib json"],
        [c["msgspec_us_per_event"], c["json_us_per_event"]],
        color=["tab:blue", "tab:orange"],
    )
    axes[2].set_ylabel("µs per event (encode + decode)")
    axes[2].set_title("codec")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


async def run() -> dict[str, Any]:
    server = NatsServer().start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream(timeout=30)
        store = EventStore(js)
        await store.ensure_stream()
        results: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "loop": type(asyncio.get_running_loop()).__module__,
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg()[0],
        }
        print(f"replay of {REPLAY_EVENTS:,} events ...", flush=True)
        results["replay"] = await bench_replay(nc, js, store)
        print(json.dumps(results["replay"], indent=1), flush=True)
        print("codecs ...", flush=True)
        results["codec"] = bench_codecs()
        print(json.dumps(results["codec"], indent=1), flush=True)
        print("appends ...", flush=True)
        results["appends"] = await bench_appends(js, store)
        print(json.dumps(results["appends"], indent=1), flush=True)
        await nc.close()
        return results
    finally:
        server.close()


def main(argv: list[str]) -> int:
    """Run the benchmark, write the JSON figures and the chart; 0 on success."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        runner = asyncio.run
    results = runner(run())
    results["targets"] = {"append_ratio": 0.8, "replay_per_s": 100_000}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ledger.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, RESULTS / "ledger.png")
    print(f"wrote {RESULTS / 'ledger.json'} and {RESULTS / 'ledger.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
