"""``hotdesk run <service>``: one service process.

Connects to NATS, builds the :class:`~hotdesk_runtime.context.ServiceContext`, keeps
the directory current from the KV bucket and awaits the service's
``hotdesk_<service>.main.serve(ctx)`` until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

from hotdesk_contracts.directory import Config
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.directory import DirectoryOwner, DirectoryWatch, load_directory
from hotdesk_runtime.health import HealthServer
from hotdesk_runtime.nats import connect, ensure_jetstream

log = logging.getLogger("hotdesk.run")

SERVICES: dict[str, str] = {
    "sip-edge": "hotdesk_sip_edge.main",
    "ivr": "hotdesk_ivr.main",
    "provisioner": "hotdesk_provisioner.main",
    "presence": "hotdesk_presence.main",
}
"""Service name → module holding ``async def serve(ctx)``."""

T = TypeVar("T")
Serve = Callable[[ServiceContext], Awaitable[None]]


class UnknownService(ValueError):
    """The service name is none of :data:`SERVICES`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown service {name!r}: choose one of {', '.join(SERVICES)}")


def find_serve(service: str) -> Serve | None:
    """The service's ``serve`` function, or ``None`` if it is not written yet.

    Only a missing ``main`` module or a missing ``serve`` counts as not written; an
    import error inside the module is a crash like any other.
    """
    if service not in SERVICES:
        raise UnknownService(service)
    module_name = SERVICES[service]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise
    serve = getattr(module, "serve", None)
    return cast(Serve, serve) if callable(serve) else None


def instance_id(service: str) -> str:
    """Unique per process: service, host, pid and a random suffix."""
    return f"{service}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def run_service(
    service: str,
    config: Config,
    config_path: Path | None,
    *,
    metrics_app: Any | None = None,
    own_directory: bool = False,
) -> int:
    """Run one service until SIGINT/SIGTERM; returns the process exit code.

    With ``telemetry.health_port`` set, ``/healthz``, ``/readyz`` (NATS connected, the
    directory watched, the service started and every part it named ready; see
    :class:`~hotdesk_runtime.context.ServiceContext`) and ``/metrics`` are served on
    that port. With ``own_directory`` (deployments without ``hotdesk up``), this process
    publishes the directory of its config file and answers reloads (``hotdesk reload``,
    SIGHUP).
    """
    serve = find_serve(service)
    nc, js = await connect(config, name=f"hotdesk-{service}")
    ctx = ServiceContext(
        name=service,
        instance_id=instance_id(service),
        config=config,
        config_path=config_path,
        nc=nc,
        js=js,
        log=logging.getLogger(f"hotdesk.{service}"),
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, ctx.stopping.set)
    # Any process may be the first on a fresh cluster (containers start in any order).
    await ensure_jetstream(js, config.nats.replicas)
    owner: DirectoryOwner | None = None
    if own_directory and config_path is not None:
        owner = await _own_directory(ctx, config_path)
    published = await load_directory(js)
    if published is not None:
        await ctx.set_directory(published)
    directory_watch = DirectoryWatch(ctx)
    watcher = asyncio.create_task(directory_watch.run())
    started = False
    ctx.add_check("nats", lambda: nc.is_connected)
    # Not ready while the directory watch is down: reloads would not reach us.
    ctx.add_check("directory-watch", lambda: directory_watch.watching)
    ctx.add_check("service", lambda: started and not ctx.stopping.is_set())
    health: HealthServer | None = None
    if config.telemetry.health_port:
        health = HealthServer(config.telemetry.health_port, ctx.readiness, metrics_app)
        await health.start()
    code = 0
    try:
        started = True
        if serve is None:
            log.warning(
                f"service {service} is not implemented yet; idling until stopped",
                extra={"service": service},
            )
            await ctx.stopping.wait()
        else:
            log.info("service running", extra={"service": service, "instance": ctx.instance_id})
            await serve(ctx)
    except Exception:
        log.exception("service crashed", extra={"service": service})
        code = 1
    finally:
        ctx.stopping.set()
        if owner is not None:
            loop.remove_signal_handler(signal.SIGHUP)
            await owner.stop()
        if health is not None:
            await health.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        with contextlib.suppress(Exception):
            await nc.drain()
    return code


async def _own_directory(ctx: ServiceContext, config_path: Path) -> DirectoryOwner:
    from .desk_removal import logout_removed_desk

    owner = DirectoryOwner(
        ctx.js, ctx.nc, ctx.config, config_path, on_desk_removed=logout_removed_desk(ctx.js)
    )
    await owner.publish()
    await owner.serve_reload_requests()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[Any]] = set()

    def on_hup() -> None:
        task = loop.create_task(owner.reload())
        reloads.add(task)  # keep a reference until it is done
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    return owner


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
