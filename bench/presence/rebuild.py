"""One read-model rebuild (or the raw consumer peer), in a process of its own.

``python -m bench.presence.rebuild --url nats://... --what desks`` rebuilds the named
presence projection with ``ProjectionRunner.rebuild``, by default with the runner
settings ``hotdesk rebuild`` and the presence service use (``--batch-size`` and
``--write-concurrency`` change them) and prints one JSON line: events applied, seconds, the
resident set size before the rebuild and the process's peak after it. A process per
measurement, so each peak belongs to that rebuild alone and not to the ledger fill.

``--what raw`` is the peer: an ordered nats-py consumer over the whole ledger stream
whose callback only counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

import nats
from nats.aio.msg import Msg

from hotdesk_contracts import streams, subjects
from hotdesk_ledger.projection import ProjectionRunner
from hotdesk_presence.projections import PROJECTIONS

WHAT = {"desks": "presence-desks", "users": "presence-users", "history": "presence-history"}


def rss_kb() -> int:
    """The current resident set size in KiB (``/proc/self/statm``, Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() // 1024


def peak_rss_kb() -> int:
    """The process's peak resident set size in KiB: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage``: Linux carries ``ru_maxrss`` over from the parent through fork
    and exec, so a child would report the parent's peak when that is higher.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def rebuild(url: str, name: str, batch_size: int, write_concurrency: int) -> dict[str, Any]:
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=30)
    runner: ProjectionRunner[Any] = ProjectionRunner(
        js, PROJECTIONS[name](), batch_size=batch_size, write_concurrency=write_concurrency
    )
    await runner.start()
    before = rss_kb()
    started = time.perf_counter()
    applied = await runner.rebuild()
    seconds = time.perf_counter() - started
    peak = peak_rss_kb()
    keys = len(await runner.items()) if name != "presence-history" else -1
    await runner.stop()
    await nc.close()
    return {
        "events": applied,
        "seconds": seconds,
        "per_s": applied / seconds,
        "rss_before_kb": before,
        "peak_rss_kb": peak,
        "peak_growth_kb": peak - before,
        "keys": keys,
    }


async def raw(url: str) -> dict[str, Any]:
    nc = await nats.connect(url, pending_size=512 * 1024 * 1024)
    js = nc.jetstream(timeout=30)
    info = await js.stream_info(streams.LEDGER.name)
    total = int(info.state.messages)
    done = asyncio.Event()
    count = 0

    async def counted(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count >= total:
            done.set()

    before = rss_kb()
    started = time.perf_counter()
    sub = await js.subscribe(
        subjects.LEDGER_ALL,
        stream=streams.LEDGER.name,
        cb=counted,
        ordered_consumer=True,
        pending_msgs_limit=1_000_000,
        pending_bytes_limit=512 * 1024 * 1024,
    )
    await asyncio.wait_for(done.wait(), 600)
    seconds = time.perf_counter() - started
    peak = peak_rss_kb()
    await sub.unsubscribe()
    await nc.close()
    return {
        "events": count,
        "seconds": seconds,
        "per_s": count / seconds,
        "rss_before_kb": before,
        "peak_rss_kb": peak,
        "peak_growth_kb": peak - before,
    }


def main(argv: list[str]) -> int:
    """Measure once and print the JSON line; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m bench.presence.rebuild")
    parser.add_argument("--url", required=True)
    parser.add_argument("--what", choices=[*WHAT, "raw"], required=True)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--write-concurrency", type=int, default=256)
    args = parser.parse_args(argv)
    job = (
        raw(args.url)
        if args.what == "raw"
        else rebuild(args.url, WHAT[args.what], args.batch_size, args.write_concurrency)
    )
    try:
        import uvloop

        result = uvloop.run(job)
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        result = asyncio.run(job)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
