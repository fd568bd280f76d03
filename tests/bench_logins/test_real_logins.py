"""A small step of the logins benchmark against the real processes: SIPp desks, the
edge and the IVR as ``hotdesk run`` processes, their own nats-server."""

from __future__ import annotations

from pathlib import Path

import nats

from bench.logins.__main__ import PIN, PROFILES, Bench, Observed
from bench.logins.system import running
from bench.register.targets import users as desk_credentials


async def test_a_rate_step_logs_every_desk_in_and_measures_latency_and_jitter(
    tmp_path: Path,
) -> None:
    cheap = next(p for p in PROFILES if p.name == "owasp-minimum-argon2")
    desks = desk_credentials(4)
    users = [str(300 + n) for n in range(8)]
    async with running(tmp_path / "system", desks, users, cheap.hash(PIN)) as system:
        observed = Observed()
        nc = await nats.connect(system.nats_url)
        try:
            await observed.subscribe(nc)
            bench = Bench(system, observed, tmp_path, desks, users)
            first = await bench.step(2, 2, "first")
            second = await bench.step(2, 2, "second")
        finally:
            await nc.close()
    for step in (first, second):
        assert (step.calls, step.successful, step.failed) == (4, 4, 0)
        assert step.logins_in_ledger == 4
        assert step.latency_samples == 4
        assert step.latency_p50_ms > 0
        assert step.jitter_packets > 0
        assert step.cpu_ms_per_login["ivr"] > 0
