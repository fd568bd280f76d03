"""The supervisor restarts crashed services and stops the rest cleanly."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from hotdesk_cli.supervisor import ChildSpec, Supervisor, backoff_delay


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n, 0.5, 4.0) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


async def wait_for_lines(path: Path, count: int) -> list[str]:
    for _ in range(400):
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return path.read_text().splitlines()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} lines")


async def test_a_crashed_child_is_restarted_and_a_healthy_one_left_alone(
    tmp_path: Path,
) -> None:
    crashes = tmp_path / "crashes"
    steady = tmp_path / "steady"
    crash = f"open({str(crashes)!r}, 'a').write('start\\n'); raise SystemExit(3)"
    stay = (
        f"import signal, sys, time; open({str(steady)!r}, 'a').write('start\\n'); "
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)"
    )
    supervisor = Supervisor(
        [
            ChildSpec("crashy", [sys.executable, "-c", crash]),
            ChildSpec("steady", [sys.executable, "-c", stay]),
        ],
        backoff_initial=0.05,
        backoff_max=0.2,
        stop_timeout=5.0,
    )
    stopping = asyncio.Event()
    run = asyncio.create_task(supervisor.run(stopping))

    assert len(await wait_for_lines(crashes, 3)) >= 3
    stopping.set()
    await asyncio.wait_for(run, 20)

    assert supervisor.states["crashy"].starts >= 3
    assert supervisor.states["crashy"].failures >= 2
    assert supervisor.states["steady"].starts == 1
    assert supervisor.states["steady"].last_exit == 0
    assert steady.read_text().splitlines() == ["start"]


async def test_a_child_ignoring_sigterm_is_killed_at_stop(tmp_path: Path) -> None:
    started = tmp_path / "started"
    stubborn = (
        f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(started)!r}, 'w').write('up\\n'); time.sleep(60)"
    )
    supervisor = Supervisor(
        [ChildSpec("stubborn", [sys.executable, "-c", stubborn])], stop_timeout=0.5
    )
    stopping = asyncio.Event()
    run = asyncio.create_task(supervisor.run(stopping))
    await wait_for_lines(started, 1)
    stopping.set()
    await asyncio.wait_for(run, 20)
    assert supervisor.states["stubborn"].last_exit == -9
