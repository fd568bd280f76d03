"""A small step of the logins benchmark against the real processes: SIPp desks, the
edge and the IVR as ``hotdesk run`` processes, their own nats-server."""

from __future__ import annotations

from pathlib import Path

import nats

from bench.logins.harness import PIN, PROFILES, Bench, Observed
from bench.logins.system import running
from bench.register.targets import users as desk_credentials


def logs(tmp_path: Path, step: str) -> str:
    """The tails of what SIPp and the services wrote, for a failure message."""
    files = [
        *sorted((tmp_path / step).glob("*errors.log")),
        tmp_path / step / "sipp.out",
        tmp_path / "system" / "ivr.log",
        tmp_path / "system" / "edge.log",
    ]
    return "\n".join(
        f"--- {f.name}\n{f.read_text(errors='replace')[-1500:]}" for f in files if f.exists()
    )


async def test_a_rate_step_logs_every_desk_in_and_measures_latency_and_jitter(
    tmp_path: Path,
) -> None:
    shipped = next(p for p in PROFILES if p.name == "peppered-pin-profile")
    desks = desk_credentials(4)
    users = [str(300 + n) for n in range(8)]
    pin_hash = shipped.hash(PIN)
    async with running(
        tmp_path / "system", desks, users, pin_hash, pepper=shipped.pepper, rtp=(42000, 42199)
    ) as system:
        observed = Observed()
        nc = await nats.connect(system.nats_url)
        try:
            await observed.subscribe(nc)
            bench = Bench(system, observed, tmp_path, desks, users)
            first = await bench.step(2, 2, "first")
            second = await bench.step(2, 2, "second")
        finally:
            await nc.close()
    for step, name in ((first, "first"), (second, "second")):
        why = f"{step}\n{logs(tmp_path, name)}"
        assert (step.calls, step.successful, step.failed) == (4, 4, 0), why
        assert step.logins_in_ledger == 4, why
        assert step.latency_samples == 4
        assert step.latency_p50_ms > 0
        assert step.jitter_packets > 0
        assert step.other_digits == [], why
        assert step.cpu_ms_per_login["ivr"] > 0
