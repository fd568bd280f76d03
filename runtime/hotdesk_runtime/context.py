"""What every service gets from the runtime: the one seam between ``cli`` and services.

Each service package exposes ``async def serve(ctx: ServiceContext) -> None`` in its
``main`` module; it runs until ``ctx.stopping`` is set and returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.directory import Config, Directory

DirectoryListener = Callable[[Directory, Directory], Awaitable[None]]
"""Called with (old, new) after the directory changed."""


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
    _not_ready: set[str] = field(default_factory=set)

    @property
    def ready(self) -> bool:
        """Whether every part of the service that reported readiness is working."""
        return not self._not_ready

    def set_ready(self, part: str, ready: bool) -> None:
        """Report whether ``part`` (a consumer, a watch) works; ``/readyz`` follows."""
        if ready:
            self._not_ready.discard(part)
        else:
            self._not_ready.add(part)

    def not_ready(self) -> list[str]:
        """The parts that reported they are not working, sorted."""
        return sorted(self._not_ready)

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
