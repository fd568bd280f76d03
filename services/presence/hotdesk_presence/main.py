"""The presence service: read models, the admin API and console, auto-logout, webhooks.

``serve(ctx)`` runs until ``ctx.stopping`` is set:

* the ledger projections (desks, users, history) on ``hotdesk_ledger``'s runner and the
  bus folds (desk status, BLF) on :class:`BusProjectionRunner`, all durable consumers;
* the admin API and console on uvicorn (``config.admin``);
* the desk feed behind the Server-Sent Events stream;
* the auto-logout scheduler and the webhook dispatcher;
* the reconciliation of desk online state with the registrations bucket (a desk whose
  bindings lapsed without an ``expired`` event, e.g. its edge died, goes offline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import uvicorn
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from hotdesk_contracts import streams
from hotdesk_contracts.commands import LedgerCommand, LogOut
from hotdesk_contracts.directory import Directory
from hotdesk_contracts.events import Cause, LedgerEvent
from hotdesk_ledger.errors import DomainError
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.projection import ProjectionRunner
from hotdesk_ledger.pull import PullConnectionError
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.nats import ensure_jetstream

from .api import AdminDeps, create_app
from .auth import SessionSigner, first_admin, session_key
from .autologout import ACTOR, Seat, due, effective_policy
from .feed import DeskFeed, watch_desks
from .metrics import PresenceMetrics, projection_name
from .projections import (
    PROJECTIONS,
    BlfStates,
    BusProjectionRunner,
    DeskSeats,
    DeskStatusFold,
    History,
    UserDirectory,
)
from .readmodels import ReadModels, open_bucket
from .reconcile import DEFAULT_EVERY, RegistrationReconciler
from .webhooks import DeliveryLog, WebhookDispatcher

log = logging.getLogger(__name__)

SECRETS_BUCKET = streams.PRESENCE.bucket
"""Session signing key and the generated first admin's hash."""

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AutoLogout:
    """Applies the auto-logout policies to every seated user, once per tick."""

    def __init__(
        self,
        read: ReadModels,
        directory: Callable[[], Directory],
        execute: Callable[[LedgerCommand], Coroutine[Any, Any, list[LedgerEvent]]],
        clock: Clock = _utcnow,
    ) -> None:
        self.read = read
        self.directory = directory
        self.execute = execute
        self.clock = clock

    async def tick(self) -> list[LedgerEvent]:
        """Log out every seat a policy says is due now; return the events appended."""
        now = self.clock()
        directory = self.directory()
        appended: list[LedgerEvent] = []
        for desk, seat in (await self.read.seats()).items():
            if seat.user is None or seat.since is None:
                continue
            lamp = await self.read.blf(seat.user)
            view = Seat(
                desk=desk,
                user=seat.user,
                since=seat.since,
                in_call=bool(lamp and lamp.active),
                last_call=lamp.changed_at if lamp else None,
            )
            reason = due(view, effective_policy(directory.policies, directory.desk(desk)), now)
            if reason is None:
                continue
            cid = uuid.uuid4().hex
            command = LogOut(
                command_id=cid,
                at=now,
                cause=Cause(actor=ACTOR),
                correlation_id=cid,
                desk=desk,
                reason=reason,
                user=seat.user,
            )
            try:
                appended.extend(await self.execute(command))
            except DomainError as exc:
                # Another replica (or the user) got there first: nothing to do.
                log.info("auto-logout skipped", extra={"desk": desk, "code": exc.code})
                continue
            log.info("auto-logout", extra={"desk": desk, "user": seat.user, "reason": str(reason)})
        return appended

    async def run(self, stopping: asyncio.Event, every: float = 15.0) -> None:
        """Tick every ``every`` seconds until ``stopping``."""
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("auto-logout tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)


CATCH_UP_ERRORS = (NatsError, TimeoutError, PullConnectionError)
"""What a catch-up meets while a stream or consumer elects a leader or the server is
away: the replica stays not ready and tries again, rather than end the service."""


async def caught_up(
    runners: list[Any],
    on_caught_up: Callable[[Any], None] | None = None,
    *,
    stopping: asyncio.Event | None = None,
    pause: float = 0.5,
) -> None:
    """Apply everything already in the streams before serving reads; tell
    ``on_caught_up`` of each runner as it gets there. A NATS error pauses a runner's
    catch-up for ``pause`` seconds and it starts again (until ``stopping`` is set)."""
    for runner in runners:
        while True:
            try:
                await runner.catch_up()
                break
            except CATCH_UP_ERRORS as exc:
                if stopping is not None and stopping.is_set():
                    raise
                log.warning(
                    "projection catch-up paused on a NATS error; trying again",
                    extra={"projection": projection_name(runner), "error": repr(exc)},
                )
                await asyncio.sleep(pause)
        if on_caught_up is not None:
            on_caught_up(runner)


async def build(
    js: JetStreamContext, directory: Callable[[], Directory], replicas: int = 1
) -> dict[str, Any]:
    """The service's parts, wired (streams and buckets ensured; no servers started)."""
    await ensure_jetstream(js, replicas)
    read = ReadModels(js)
    secrets = await open_bucket(js, SECRETS_BUCKET)
    store = EventStore(js)
    await store.ensure_stream()

    async def execute(command: LedgerCommand) -> list[LedgerEvent]:
        return await Ledger(store, directory().policies).execute(command)

    extra = await first_admin(secrets, directory().admins)
    deliveries = DeliveryLog(js=js, replicas=replicas)
    feed = DeskFeed()
    ready = asyncio.Event()
    deps = AdminDeps(
        directory=directory,
        read=read,
        execute=execute,
        signer=SessionSigner(await session_key(secrets)),
        deliveries=deliveries,
        feed=feed,
        extra_admins=[extra] if extra else [],
        ready=ready.is_set,
    )
    return {
        "read": read,
        "deps": deps,
        "ready": ready,
        "execute": execute,
        "ledger_runners": [
            ProjectionRunner(js, DeskSeats()),
            ProjectionRunner(js, UserDirectory()),
            ProjectionRunner(js, History()),
        ],
        "bus_runners": [
            BusProjectionRunner(js, DeskStatusFold()),
            BusProjectionRunner(js, BlfStates()),
        ],
        "webhooks": WebhookDispatcher(js, directory, deliveries),
        "reconciler": RegistrationReconciler(js),
    }


async def serve(ctx: ServiceContext, *, reconcile_every: float = DEFAULT_EVERY) -> None:
    """Run presence until ``ctx.stopping`` is set; desks shown online are checked
    against the registrations bucket every ``reconcile_every`` seconds."""

    def directory() -> Directory:
        return ctx.directory

    # Named before the first await: /readyz says 503 until each projection has caught
    # up and the admin API listens.
    ctx.expect("admin-http", *PROJECTIONS, DeskStatusFold().name, BlfStates().name)
    parts = await build(ctx.js, directory, ctx.config.nats.replicas)
    deps: AdminDeps = parts["deps"]
    deps.secure_cookies = bool(ctx.config.admin.tls_cert)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(deps),
            host=ctx.config.admin.listen,
            port=ctx.config.admin.port,
            log_config=None,
            access_log=False,
            ssl_certfile=ctx.config.admin.tls_cert or None,
            ssl_keyfile=ctx.config.admin.tls_key or None,
            lifespan="off",
        )
    )
    runners = [*parts["ledger_runners"], *parts["bus_runners"]]
    metrics = PresenceMetrics(ctx.js, parts["ledger_runners"], parts["bus_runners"])
    tasks = [asyncio.create_task(server.serve(), name="presence-http")]
    ctx.ready_when("admin-http", lambda: server.started)
    await caught_up(
        runners,
        lambda runner: ctx.set_ready(projection_name(runner), True),
        stopping=ctx.stopping,
    )
    parts["ready"].set()
    for runner in runners:
        tasks.append(asyncio.create_task(runner.run(ctx.stopping)))
        ctx.watch_task(projection_name(runner), tasks[-1])
    tasks.append(asyncio.create_task(metrics.poller.run(ctx.stopping)))
    tasks.append(
        asyncio.create_task(watch_desks(parts["read"], directory, deps.feed, ctx.stopping))
    )
    tasks.append(
        asyncio.create_task(
            AutoLogout(parts["read"], directory, parts["execute"]).run(ctx.stopping)
        )
    )
    tasks.append(asyncio.create_task(parts["webhooks"].run(ctx.stopping)))
    tasks.append(asyncio.create_task(parts["reconciler"].run(ctx.stopping, reconcile_every)))
    log.info("presence ready", extra={"port": ctx.config.admin.port})
    await ctx.stopping.wait()
    server.should_exit = True
    # Open Server-Sent Event streams would hold uvicorn's graceful shutdown open.
    server.force_exit = True
    done, pending = await asyncio.wait(tasks, timeout=10.0)
    for task in pending:
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("presence task failed", extra={"error": repr(task.exception())})
