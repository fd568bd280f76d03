"""What tracing costs: ``python -m bench.tracing``.

Each setup runs in a process of its own (the tracer provider is per process):

* ``none``: no tracer provider installed (the API's no-op tracer);
* ``dropped``: :func:`~hotdesk_runtime.telemetry.setup_telemetry` without an exporter,
  so spans are made but not recorded (trace ids still reach logs and headers);
* ``exported``: the same with a batch span processor handing every span to an
  in-memory exporter (what the OTLP exporter costs in this process, without its
  network I/O).

Figures, client-side CPU per operation (``time.process_time``, best of the rounds):

* one provisioning fetch through the provisioning server's ASGI app in-process
  (Basic auth, a 1,000-desk Yealink fleet, no sockets), with no reprovision in flight;
* one :class:`~hotdesk_ledger.store.EventStore` append from 32 concurrent tasks to a
  fresh nats-server, outside any trace, and inside a span of its own (as the IVR's
  login appends; that span's cost included).

``exported`` counts the batch processor's thread too (``process_time`` is the whole
process's), as the OTLP exporter's work would be, minus its encoding and network I/O.

Figures go to ``bench/results/tracing.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "results"
SETUPS = ("none", "dropped", "exported")
FETCHES = 4000
APPENDS = 4000
ROUNDS = 5
TASKS = 32


def install(setup: str) -> None:
    if setup == "none":
        return
    from hotdesk_runtime.telemetry import setup_telemetry

    telemetry = setup_telemetry("bench")
    if setup == "exported":
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        telemetry.add_span_processor(
            BatchSpanProcessor(InMemorySpanExporter(), max_queue_size=4 * FETCHES)
        )


async def fetch_cpu_us() -> float:
    from bench.provision.fleet import SIP, fleet
    from hotdesk_contracts.directory import ProvisioningSettings
    from hotdesk_provisioner.seats import DeskSeats
    from hotdesk_provisioner.server import ProvisioningServer

    directory = fleet(1000)
    server = ProvisioningServer(
        directory=lambda: directory,
        settings=ProvisioningSettings(auth="basic", rate_limit_per_minute=0),
        sip=SIP,
        seats=DeskSeats(),
        nonce_key=b"bench",
        origin="bench",
        trace_of=lambda desk: "",
    )

    def scope(n: int) -> dict[str, Any]:
        desk = directory.desks[n % len(directory.desks)]
        user = desk.provisioning_user or desk.name
        password = desk.provisioning_password or desk.sip_password
        path = f"/{desk.mac.lower()}.cfg"
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"user-agent", b"Yealink SIP-T46S 66.86.0.15"),
                (b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode())),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8081),
        }

    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scopes = [scope(n) for n in range(FETCHES)]
    for item in scopes[:500]:  # warm-up: renders cached, code paths hot
        await server.app(item, receive, send)
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for item in scopes:
            await server.app(item, receive, send)
        rounds.append((time.process_time() - started) / FETCHES * 1e6)
    if set(statuses) != {200}:
        raise RuntimeError(f"fetches answered {sorted(set(statuses))}")
    return min(rounds)


async def append_cpu_us() -> dict[str, float]:
    import nats
    from opentelemetry import trace

    from bench.ledger.__main__ import append_workload, partition
    from hotdesk_contracts.events import LedgerEvent
    from hotdesk_ledger.store import EventStore
    from tests.support.natsserver import NatsServer

    tracer = trace.get_tracer("bench")
    server = NatsServer().start()
    try:
        nc = await nats.connect(server.url)
        store = EventStore(nc.jetstream())
        await store.ensure_stream()

        async def worker(part: list[tuple[str, LedgerEvent]], traced: bool) -> None:
            last: dict[str, int] = {}
            for subject, event in part:
                if traced:
                    with tracer.start_as_current_span("login"):
                        result = await store.append(subject, [event], last.get(subject, 0))
                else:
                    result = await store.append(subject, [event], last.get(subject, 0))
                last[subject] = result.last_seq

        out: dict[str, list[float]] = {"untraced": [], "traced": []}
        for round_no in range(ROUNDS):
            for label in out:
                events = append_workload(f"T{label[0]}{round_no}x")
                started = time.process_time()
                await asyncio.gather(
                    *(worker(p, label == "traced") for p in partition(events, TASKS))
                )
                out[label].append((time.process_time() - started) / APPENDS * 1e6)
        await nc.close()
        return {label: min(values) for label, values in out.items()}
    finally:
        server.close()


def measure(setup: str) -> dict[str, Any]:
    """One setup's figures (run in a process of its own)."""
    install(setup)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        runner = asyncio.run
    append = runner(append_cpu_us())
    return {
        "fetch_cpu_us": runner(fetch_cpu_us()),
        "append_untraced_cpu_us": append["untraced"],
        "append_traced_cpu_us": append["traced"],
    }


def main(argv: list[str]) -> int:
    """Measure every setup, each in its own process; write the JSON figures."""
    if argv and argv[0] == "--setup":
        print(json.dumps(measure(argv[1])))
        return 0
    results: dict[str, Any] = {
        "benchmark": "tracing",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average_at_start": os.getloadavg()[0],
        "setup": {"fetches": FETCHES, "appends": APPENDS, "rounds": ROUNDS, "tasks": TASKS},
        "cpu_us": {},
    }
    for setup in SETUPS:
        done = subprocess.run(
            [sys.executable, "-m", "bench.tracing", "--setup", setup],
            capture_output=True,
            text=True,
            check=True,
        )
        results["cpu_us"][setup] = json.loads(done.stdout.strip().splitlines()[-1])
        print(setup, results["cpu_us"][setup], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tracing.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'tracing.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
