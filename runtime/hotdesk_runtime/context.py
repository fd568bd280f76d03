"""What every service gets from the runtime: the one seam between ``cli`` and services.

Each service package exposes ``async def serve(ctx: ServiceContext) -> None`` in its
``main`` module; it runs until ``ctx.stopping`` is set and returns.

Readiness is made of named parts. The runtime checks its own (``nats``,
``directory-watch``, ``service``: ``serve`` running and not stopping) on every probe;
a service names its parts with :meth:`ServiceContext.expect` before its first
``await``, so ``/readyz`` says 503 until each has reported ready (a consumer bound, a
listener open, a replay done) with :meth:`~ServiceContext.set_ready`,
:meth:`~ServiceContext.ready_when` or :meth:`~ServiceContext.watch_task`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.directory import Config, Directory

DirectoryListener = Callable[[Directory, Directory], Awaitable[None]]
"""Called with (old, new) after the directory changed."""

ReadyCheck = Callable[[], bool]
"""Asked on every readiness probe: whether a part works right now."""

_READY_POLL_SECONDS = 0.05


@dataclass
class ServiceContext:
    name: str
    """Service name: ``sip-edge``, ``ivr``, ``provisioner``, ``presence``."""
    instance_id: str
    """Unique per process; used as the edge id, consumer names, ``origin`` of events."""
    config: Config
    config_path: Path | None
    nc: Client
    js: JetStreamContext
    log: logging.Logger
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _directory: Directory | None = None
    _listeners: list[DirectoryListener] = field(default_factory=list)
    _parts: dict[str, bool] = field(default_factory=dict)
    _checks: dict[str, ReadyCheck] = field(default_factory=dict)
    _readiness_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def ready(self) -> bool:
        """Whether every part (reported or checked) is working."""
        return all(self.readiness().values())

    def expect(self, *parts: str) -> None:
        """Name parts that are not ready until they report so (call it before the
        service's first ``await``: a probe in between would find nothing missing)."""
        for part in parts:
            self._parts.setdefault(part, False)

    def set_ready(self, part: str, ready: bool) -> None:
        """Report whether ``part`` (a consumer, a watch) works; ``/readyz`` follows."""
        self._parts[part] = ready

    def add_check(self, part: str, check: ReadyCheck) -> None:
        """Make ``part`` ready exactly while ``check()`` says so, asked at each probe."""
        self._checks[part] = check

    def readiness(self) -> dict[str, bool]:
        """Every part and whether it is ready, by name."""
        out = {part: bool(check()) for part, check in self._checks.items()}
        out.update(self._parts)
        return dict(sorted(out.items()))

    def not_ready(self) -> list[str]:
        """The parts that are not ready, sorted."""
        return [part for part, ok in self.readiness().items() if not ok]

    def ready_when(self, part: str, done: asyncio.Event | ReadyCheck) -> None:
        """Mark ``part`` ready once ``done`` (an event, or a check polled every 50 ms)
        is set; gives up when the service stops. Returns at once."""
        self.expect(part)
        self._track(self._ready_when(part, done))

    def watch_task(self, part: str, task: asyncio.Task[object]) -> None:
        """Mark ``part`` not ready if ``task`` (a consumer's loop) ends before the
        service stops: the part has stopped working."""

        def ended(_task: asyncio.Task[object]) -> None:
            if not self.stopping.is_set():
                self.set_ready(part, False)

        task.add_done_callback(ended)

    async def subscriptions_bound(self, every: float = 5.0) -> None:
        """Return once the server has every subscription made on ``nc`` so far (or
        when the service stops).

        ``nc.flush()`` cannot say so: nats-py writes its PING ahead of commands still
        queued, so the PONG may come back before a SUB just made has left. A message
        to an inbox of our own is queued behind them, and comes back after them.
        """
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            while not self.stopping.is_set():
                await self.nc.publish(inbox, b"")
                try:
                    await sub.next_msg(timeout=every)
                    return
                except TimeoutError:
                    self.log.warning(
                        "NATS has not confirmed the subscriptions yet", extra={"waited": every}
                    )
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _track(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._readiness_tasks.add(task)
        task.add_done_callback(self._readiness_tasks.discard)

    async def _ready_when(self, part: str, done: asyncio.Event | ReadyCheck) -> None:
        if isinstance(done, asyncio.Event):
            waiting = asyncio.ensure_future(done.wait())
            stopping = asyncio.ensure_future(self.stopping.wait())
            try:
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (waiting, stopping):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if done.is_set() and not self.stopping.is_set():
                self.set_ready(part, True)
            return
        while not self.stopping.is_set():
            if done():
                self.set_ready(part, True)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), _READY_POLL_SECONDS)

    @property
    def directory(self) -> Directory:
        """The current directory: replaced whole on every reload."""
        return self._directory if self._directory is not None else self.config.directory()

    def on_directory_change(self, listener: DirectoryListener) -> None:
        self._listeners.append(listener)

    async def set_directory(self, new: Directory) -> None:
        """Install a new directory revision and tell the listeners (runtime use).

        A listener that raises is logged and the others still run: one broken
        listener must not keep the rest of the service on an old directory, nor stop
        the watch that delivers later revisions.
        """
        old = self.directory
        self._directory = new
        for listener in self._listeners:
            try:
                await listener(old, new)
            except Exception as exc:
                self.log.exception(
                    "directory listener failed; the others still ran",
                    extra={
                        "listener": getattr(listener, "__qualname__", repr(listener)),
                        "error": str(exc),
                    },
                )
