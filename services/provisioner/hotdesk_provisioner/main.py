"""The provisioner service: the provisioning HTTP server plus reprovisioning.

Triggers come from a durable consumer on the desk ledger shared by every replica (one
replica acts on each event); each replica also follows the whole desk ledger with an
ordered consumer so that whichever replica a phone reaches serves the newest state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import msgspec
import uvicorn
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event
from hotdesk_contracts.commands import SendCheckSync
from hotdesk_contracts.events import LoggedIn, LoggedOut, Roamed
from hotdesk_contracts.messages import (
    CheckSyncResult,
    RegistrationChanged,
    ReprovisionConfirmed,
    ReprovisionFailed,
)
from hotdesk_runtime.context import ServiceContext

from .bus import encode_message, follow_desk_ledger, publish_unknown_device
from .reprovision import (
    Action,
    Confirmed,
    Failed,
    ReprovisionTracker,
    SendNotify,
    TrackerSettings,
)
from .seats import DeskSeats
from .server import ProvisioningServer, ServedFile
from .vendors import DEFAULT_NOTIFY_EVENT, plugin

log = logging.getLogger("hotdesk.provisioner")

TRIGGER_CONSUMER = "hotdesk-provisioner-reprovision"
"""Durable consumer shared by every replica: each desk event reprovisions once."""

_command_encoder = msgspec.json.Encoder()
_registration_decoder = msgspec.json.Decoder(RegistrationChanged)
_result_decoder = msgspec.json.Decoder(CheckSyncResult)


class _Uvicorn(uvicorn.Server):
    """The service's own stop event ends the server; signals belong to the runner."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


class Provisioner:
    """Wires the HTTP server, the ledger consumers and the tracker for one process."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        settings = ctx.config.provisioning
        self.seats = DeskSeats()
        self.server = ProvisioningServer(
            directory=lambda: ctx.directory,
            settings=settings,
            sip=ctx.config.sip,
            seats=self.seats,
            nonce_key=secrets.token_bytes(32),
            origin=ctx.instance_id,
            report_unknown=lambda seen: publish_unknown_device(ctx.js, seen),
            on_served=self._served,
        )
        self.tracker = ReprovisionTracker(
            TrackerSettings(
                retries=settings.retries,
                retry_backoff_seconds=settings.retry_backoff_seconds,
                stage_timeout_seconds=settings.stage_timeout_seconds,
            )
        )
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Serve until ``ctx.stopping`` is set."""
        ctx = self.ctx
        settings = ctx.config.provisioning
        follower = await follow_desk_ledger(ctx.js, self.seats)
        registrations = await ctx.nc.subscribe(
            subjects.EDGE_REGISTRATION_ALL, cb=self._registration
        )
        triggers = await ctx.js.pull_subscribe(
            subjects.LEDGER_DESKS,
            durable=TRIGGER_CONSUMER,
            stream=streams.LEDGER.name,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.NEW,
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject=subjects.LEDGER_DESKS,
            ),
        )
        http = _Uvicorn(
            uvicorn.Config(
                self.server.app,
                host=settings.listen,
                port=settings.port,
                ssl_certfile=settings.tls_cert or None,
                ssl_keyfile=settings.tls_key or None,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        workers = [
            asyncio.create_task(http.serve(), name="provisioning-http"),
            asyncio.create_task(self._consume_triggers(triggers), name="reprovision-triggers"),
            asyncio.create_task(self._drive(), name="reprovision-timers"),
        ]
        log.info(
            "provisioner running",
            extra={
                "listen": settings.listen,
                "port": settings.port,
                "tls": bool(settings.tls_cert),
            },
        )
        try:
            await ctx.stopping.wait()
        finally:
            http.should_exit = True
            self._wake.set()
            for task in workers[1:]:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for task in list(self._tasks):
                task.cancel()
            for sub in (follower, registrations):
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await triggers.unsubscribe()

    # --- triggers ---------------------------------------------------------------------
    async def _consume_triggers(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self.ctx.stopping.is_set():
            try:
                msgs = await sub.fetch(batch=64, timeout=1.0)
            except NatsTimeoutError:
                continue
            for msg in msgs:
                try:
                    await self._trigger(msg)
                except Exception:
                    # A desk that cannot be rendered (a vendor no plugin knows) must not
                    # stop reprovisioning for every other desk.
                    log.exception("reprovision trigger failed", extra={"subject": msg.subject})
                await msg.ack()

    async def _trigger(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except EventDecodeError as exc:
            log.error("undecodable ledger event", extra={"subject": msg.subject, "error": str(exc)})
            return
        if not isinstance(event, LoggedIn | LoggedOut | Roamed):
            return
        # The trigger may arrive before the follower saw the event: apply it here too
        # (by sequence, once) so the phone fetches the state the NOTIFY announces.
        self.seats.apply(event, msg.metadata.sequence.stream)
        self.reprovision(event.desk)

    def reprovision(self, desk_name: str) -> None:
        """Render the desk's newest state and start tracking its reprovision."""
        desk = self.ctx.directory.desk(desk_name)
        if desk is None:
            log.warning("ledger event for a desk not in the directory", extra={"desk": desk_name})
            return
        rendered = self.server.render_desk(desk)
        vendor, _ = self.server.vendor_of(desk)
        event = plugin(vendor).notify_event if vendor else DEFAULT_NOTIFY_EVENT
        reprovision_id = uuid.uuid4().hex
        version = rendered.version if rendered is not None else ""
        log.info(
            "reprovision started",
            extra={"desk": desk_name, "reprovision_id": reprovision_id, "config_version": version},
        )
        self._perform(self.tracker.start(desk_name, reprovision_id, version, event, time.time()))

    # --- inputs -------------------------------------------------------------------------
    def _served(self, served: ServedFile) -> None:
        self._perform(self.tracker.fetched(served.desk, served.config_version, served.at))

    async def _registration(self, msg: Msg) -> None:
        try:
            change = _registration_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        if change.kind in ("registered", "refreshed") and change.contacts:
            self._perform(self.tracker.registered(change.aor, time.time()))

    async def _drive(self) -> None:
        while not self.ctx.stopping.is_set():
            deadline = self.tracker.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._perform(self.tracker.tick(time.time()))

    # --- outputs ------------------------------------------------------------------------
    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendNotify):
                self._spawn(self._send_notify(action))
            else:
                self._spawn(self._publish_outcome(action))
        self._wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_notify(self, action: SendNotify) -> None:
        command = SendCheckSync(
            desk=action.desk, event=action.event, reprovision_id=action.reprovision_id
        )
        timeout = self.ctx.config.provisioning.stage_timeout_seconds
        try:
            reply = await self.ctx.nc.request(
                subjects.EDGE_COMMAND_ANY, _command_encoder.encode(command), timeout=timeout
            )
            result = _result_decoder.decode(reply.data)
            status, contacts = result.status, result.contacts
        except (NoRespondersError, NatsTimeoutError, msgspec.DecodeError) as exc:
            # No edge answered: a NOTIFY failure, retried like a phone that did not answer.
            log.warning(
                "check-sync not sent",
                extra={
                    "desk": action.desk,
                    "reprovision_id": action.reprovision_id,
                    "error": type(exc).__name__,
                },
            )
            status, contacts = 0, -1
        self._perform(
            self.tracker.notify_answered(
                action.desk, action.reprovision_id, status, contacts, time.time()
            )
        )

    async def _publish_outcome(self, action: Confirmed | Failed) -> None:
        now = datetime.now(UTC)
        message: ReprovisionConfirmed | ReprovisionFailed
        if isinstance(action, Confirmed):
            message = ReprovisionConfirmed(
                at=now,
                origin=self.ctx.instance_id,
                desk=action.desk,
                reprovision_id=action.reprovision_id,
                config_version=action.config_version,
                attempts=action.attempts,
            )
            log.info(
                "reprovision confirmed",
                extra={"desk": action.desk, "reprovision_id": action.reprovision_id},
            )
        else:
            message = ReprovisionFailed(
                at=now,
                origin=self.ctx.instance_id,
                desk=action.desk,
                reprovision_id=action.reprovision_id,
                config_version=action.config_version,
                attempts=action.attempts,
                stage=action.stage,
            )
            log.warning(
                "reprovision failed",
                extra={
                    "desk": action.desk,
                    "reprovision_id": action.reprovision_id,
                    "stage": action.stage,
                },
            )
        await self.ctx.js.publish(subjects.provisioning_event(action.desk), encode_message(message))


async def serve(ctx: ServiceContext) -> None:
    """Run the provisioner until ``ctx.stopping`` is set."""
    await Provisioner(ctx).run()
