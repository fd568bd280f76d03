"""The supervisor of ``hotdesk up``: one child process per service, restarted on a crash.

A child that exits while the supervisor is not stopping is restarted after an
exponential backoff (0.5 s, 1 s, 2 s, … capped), reset once a run lasted long enough
to count as healthy. Stopping sends SIGTERM to every child, waits, then kills what is
left. Children run in sessions of their own so a Ctrl-C at the terminal reaches the
supervisor only, which then stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hotdesk_runtime.process import die_with_parent

log = logging.getLogger("hotdesk.supervisor")


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None


def backoff_delay(failures: int, initial: float, maximum: float) -> float:
    """Delay before restart number ``failures`` (1-based): ``initial * 2**(n-1)``, capped."""
    return float(min(maximum, initial * (2 ** max(0, failures - 1))))


@dataclass
class ChildState:
    spec: ChildSpec
    starts: int = 0
    failures: int = 0
    last_exit: int | None = None
    pid: int | None = None


@dataclass
class Supervisor:
    """Runs :class:`ChildSpec` processes until :meth:`run`'s ``stopping`` is set."""

    specs: Sequence[ChildSpec]
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    healthy_after: float = 30.0
    """A run at least this long resets the backoff."""
    stop_timeout: float = 10.0
    states: dict[str, ChildState] = field(default_factory=dict)

    async def run(self, stopping: asyncio.Event) -> None:
        """Start every child and keep them running until ``stopping`` is set."""
        self.states = {spec.name: ChildState(spec) for spec in self.specs}
        await asyncio.gather(*(self._keep(self.states[s.name], stopping) for s in self.specs))

    async def _keep(self, state: ChildState, stopping: asyncio.Event) -> None:
        spec = state.spec
        while not stopping.is_set():
            started = time.monotonic()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *spec.argv,
                    env=dict(spec.env) if spec.env is not None else None,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            except OSError as exc:
                log.error("cannot start service", extra={"service": spec.name, "error": str(exc)})
                code: int | None = None
            else:
                state.starts += 1
                state.pid = proc.pid
                log.info("service started", extra={"service": spec.name, "pid": proc.pid})
                code = await self._wait(proc, stopping)
                state.pid = None
                state.last_exit = code
            if stopping.is_set():
                log.info("service stopped", extra={"service": spec.name, "exit_code": code})
                return
            if time.monotonic() - started >= self.healthy_after:
                state.failures = 0
            state.failures += 1
            delay = backoff_delay(state.failures, self.backoff_initial, self.backoff_max)
            log.error(
                "service exited, restarting",
                extra={"service": spec.name, "exit_code": code, "restart_in": delay},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)

    async def _wait(self, proc: asyncio.subprocess.Process, stopping: asyncio.Event) -> int:
        exited = asyncio.ensure_future(proc.wait())
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(exited), self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await exited
        return exited.result()
