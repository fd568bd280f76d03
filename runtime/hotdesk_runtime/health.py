"""Health endpoints of one service process: ``/healthz``, ``/readyz`` and ``/metrics``.

Served on ``telemetry.health_port`` (containers use 9090, see the Kubernetes probes):
``/healthz`` answers 200 while the process runs its loop (liveness), ``/readyz`` 200
only while every readiness part is ready and 503 otherwise, naming the parts either
way (see :mod:`hotdesk_runtime.context`)::

    not ready: blf-watch
    ready: directory-watch, ivr-router, ledger-follower, nats, service, sip-transports

``/metrics`` is the Prometheus exposition of the process's meters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

log = logging.getLogger("hotdesk.health")

Readiness = Callable[[], Mapping[str, bool]]
"""Every readiness part and whether it is ready (``ServiceContext.readiness``)."""


def readiness_text(parts: Mapping[str, bool]) -> tuple[int, str]:
    """The status code and body ``/readyz`` answers for ``parts``."""
    pending = sorted(part for part, ok in parts.items() if not ok)
    ready = sorted(part for part, ok in parts.items() if ok)
    lines = [f"not ready: {', '.join(pending)}"] if pending else []
    lines.append(f"ready: {', '.join(ready)}" if ready else "ready:")
    return (503 if pending else 200), "\n".join(lines) + "\n"


def health_app(readiness: Readiness, metrics_app: Any | None = None) -> Starlette:
    """The ASGI app with the three endpoints."""

    async def healthz(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    async def readyz(_request: Request) -> PlainTextResponse:
        status, text = readiness_text(readiness())
        return PlainTextResponse(text, status_code=status)

    routes: list[Route] = [Route("/healthz", healthz), Route("/readyz", readyz)]
    if metrics_app is not None:
        routes.append(Route("/metrics", _AsgiEndpoint(metrics_app)))
    return Starlette(routes=routes)


class _AsgiEndpoint:
    """Wraps a plain ASGI function so Starlette routes to it as an app, not a view."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service owns SIGINT/SIGTERM (they set ctx.stopping); uvicorn must not.
        yield


class HealthServer:
    """uvicorn serving :func:`health_app` inside the service's event loop."""

    def __init__(
        self,
        port: int,
        readiness: Readiness,
        metrics_app: Any | None = None,
        *,
        host: str = "0.0.0.0",
    ) -> None:
        config = uvicorn.Config(
            health_app(readiness, metrics_app),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self.port = port
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the port is bound (raises if it cannot be)."""
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(int(timeout / 0.02)):
            if self._server.started:
                log.info("health endpoints ready", extra={"port": self.port})
                return
            if self._task.done():
                break
            await asyncio.sleep(0.02)
        await self.stop()
        raise OSError(f"health endpoints could not listen on port {self.port}")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception, SystemExit):
            await self._task
        self._task = None
