"""The provisioner service: the provisioning HTTP server plus reprovisioning.

Triggers come from a durable consumer on the desk ledger shared by every replica (one
replica acts on each event); each replica also follows the whole desk ledger with an
ordered consumer so that whichever replica a phone reaches serves the newest state.

Nothing here assumes it is the only replica or that it never restarts. A reprovision
in flight lives in the ``hotdesk_provisioner`` bucket, not in this process: every
replica hears every fetch (``ConfigServed``, published by whichever replica served it),
every registration and every deadline, and moves the reprovision on by a
compare-and-set on its key, so exactly one replica acts on each step. A restarted
replica reads the bucket and carries on. Outcomes are published with a message id,
so a replica that dies between publishing and recording publishes no duplicate.

Traces: a ledger event is processed in a ``process <Event>`` span continuing the trace
its headers carry (the login that wrote it); the ``reprovision`` span inside it renders
the desk's files and is remembered with the reprovision (in the bucket), so the
check-sync request, the phone's fetch and the outcome join the login's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import msgspec
import uvicorn
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event
from hotdesk_contracts.commands import SendCheckSync
from hotdesk_contracts.directory import Directory
from hotdesk_contracts.events import LoggedIn, LoggedOut, Roamed
from hotdesk_contracts.messages import (
    CheckSyncResult,
    ConfigServed,
    RegistrationChanged,
    ReprovisionConfirmed,
    ReprovisionFailed,
)
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.logging import log_context
from hotdesk_runtime.telemetry import (
    DESK,
    SIP_STATUS_CODE,
    context_of,
    process_span,
    publish_span,
    traceparent,
)

from .bus import caught_up, encode_message, follow_desk_ledger, publish_unknown_device
from .metrics import ProvisionerMetrics
from .reprovision import (
    Action,
    Confirmed,
    Failed,
    Reprovision,
    ReprovisionTracker,
    SendNotify,
    TrackerSettings,
)
from .seats import DeskSeats
from .server import ProvisioningServer, ServedFile
from .state import (
    CAS_ATTEMPTS,
    ReprovisionStore,
    SharedNonceCounts,
    StateConflict,
    StateError,
    StateFollower,
    open_bucket,
    shared_nonce_key,
)
from .vendors import DEFAULT_NOTIFY_EVENT, UnknownVendorError, plugin

log = logging.getLogger("hotdesk.provisioner")
_tracer = trace.get_tracer("hotdesk_provisioner")

TRIGGER_CONSUMER = "hotdesk-provisioner-reprovision"
"""Durable consumer shared by every replica: each desk event reprovisions once."""

LEDGER_REPLAY_SECONDS = 10.0
"""How long a starting replica waits to replay the desk ledger before it serves."""

TRIGGERS_PART = "reprovision-triggers"
"""The readiness part of the trigger consumer: not ready while its fetches fail."""
HTTP_PART = "provisioning-http"
"""The readiness part of the provisioning HTTP server: ready once it listens."""

_command_encoder = msgspec.json.Encoder()
_registration_decoder = msgspec.json.Decoder(RegistrationChanged)
_result_decoder = msgspec.json.Decoder(CheckSyncResult)
_served_decoder = msgspec.json.Decoder(ConfigServed)

Step = Callable[[ReprovisionTracker, float], list[Action]]
"""One tracker input, applied to a tracker holding just the desk's reprovision."""


class _Uvicorn(uvicorn.Server):
    """The service's own stop event ends the server; signals belong to the runner."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


class Provisioner:
    """Wires the HTTP server, the ledger consumers and the shared reprovision state for
    one replica."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        settings = ctx.config.provisioning
        self.seats = DeskSeats()
        self.server = ProvisioningServer(
            directory=lambda: ctx.directory,
            settings=settings,
            sip=ctx.config.sip,
            seats=self.seats,
            # Replaced by the key every replica shares before the server takes requests.
            nonce_key=b"",
            origin=ctx.instance_id,
            report_unknown=lambda seen: publish_unknown_device(ctx.js, seen),
            on_served=self._served,
            on_learned=self._learned,
            trace_of=self._trace_of,
        )
        self.settings = TrackerSettings(
            retries=settings.retries,
            retry_backoff_seconds=settings.retry_backoff_seconds,
            stage_timeout_seconds=settings.stage_timeout_seconds,
        )
        self._in_flight: dict[str, tuple[int, Reprovision]] = {}
        """Every replica's reprovisions in flight by desk, with their key revision."""
        self._revisions: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._store: ReprovisionStore | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.retry_initial_seconds = 0.5
        """First delay before a failed trigger is redelivered or a failed fetch retried."""
        self.retry_max_seconds = 30.0
        self.metrics = ProvisionerMetrics(ctx.js, TRIGGER_CONSUMER)
        ctx.on_directory_change(self._directory_changed)

    async def run(self) -> None:
        """Serve until ``ctx.stopping`` is set."""
        ctx = self.ctx
        ctx.expect(TRIGGERS_PART, HTTP_PART)
        settings = ctx.config.provisioning
        state = await open_bucket(ctx.js, streams.PROVISIONER)
        self._store = ReprovisionStore(state, ctx.instance_id)
        self.server.nonce_key = await shared_nonce_key(state)
        self.server.nonce_counts = SharedNonceCounts(
            await open_bucket(ctx.js, streams.NONCE_COUNTS)
        )
        follower = StateFollower(state, self._state_changed, self.server.learn)
        await follower.start()
        ledger = await follow_desk_ledger(ctx.js, self.seats)
        if not await caught_up(ledger, LEDGER_REPLAY_SECONDS):
            log.warning(
                "desk ledger not replayed before serving",
                extra={"waited_seconds": LEDGER_REPLAY_SECONDS},
            )
        registrations = await ctx.nc.subscribe(
            subjects.EDGE_REGISTRATION_ALL, cb=self._registration
        )
        served = await ctx.nc.subscribe(subjects.SERVED_ALL, cb=self._fetched)
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
        consumer = asyncio.create_task(self._consume_triggers(triggers), name=TRIGGERS_PART)
        consumer.add_done_callback(self._triggers_ended)
        workers = [
            asyncio.create_task(http.serve(), name=HTTP_PART),
            consumer,
            asyncio.create_task(self._drive(), name="reprovision-timers"),
            asyncio.create_task(self.metrics.poller.run(ctx.stopping), name="metrics"),
        ]
        ctx.ready_when(HTTP_PART, lambda: http.started)
        log.info(
            "provisioner running",
            extra={
                "listen": settings.listen,
                "port": settings.port,
                "tls": bool(settings.tls_cert),
                "reprovisions_in_flight": len(self._in_flight),
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
            for sub in (ledger, registrations, served):
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await triggers.unsubscribe()
            await follower.stop()
            # Outcomes and notifies already decided may finish; the state they left in
            # the bucket is what the next replica starts from.
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in list(self._tasks):
                task.cancel()

    # --- triggers ---------------------------------------------------------------------
    async def _consume_triggers(self, sub: JetStreamContext.PullSubscription) -> None:
        """Fetch ledger events until stopping; a failing fetch is retried with backoff
        (the service reports not ready meanwhile) rather than ending the consumer."""
        delay = self.retry_initial_seconds
        self.ctx.set_ready(TRIGGERS_PART, True)
        while not self.ctx.stopping.is_set():
            try:
                msgs = await sub.fetch(batch=64, timeout=1.0)
            except TimeoutError:
                # nats-py raises its own TimeoutError or asyncio's, depending on where
                # the wait ran out; both mean "nothing new".
                self.ctx.set_ready(TRIGGERS_PART, True)
                delay = self.retry_initial_seconds
                continue
            except Exception as exc:
                self.ctx.set_ready(TRIGGERS_PART, False)
                log.error(
                    "reprovision trigger fetch failed; retrying",
                    extra={"error": repr(exc), "retry_in_seconds": delay},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ctx.stopping.wait(), delay)
                delay = min(delay * 2, self.retry_max_seconds)
                continue
            self.ctx.set_ready(TRIGGERS_PART, True)
            delay = self.retry_initial_seconds
            for msg in msgs:
                await self._handle_trigger(msg)

    def _triggers_ended(self, task: asyncio.Task[None]) -> None:
        if not self.ctx.stopping.is_set():
            # Should not happen (the loop catches everything), but if it does the
            # service must not look healthy while no login reprovisions a phone.
            self.ctx.set_ready(TRIGGERS_PART, False)
            error = None if task.cancelled() else task.exception()
            log.error("reprovision trigger consumer ended", extra={"error": repr(error)})

    async def _handle_trigger(self, msg: Msg) -> None:
        """Act on one ledger event: ack when done, term when it can never succeed
        (a desk no plugin can render), nak with a growing delay on a transient error
        (the state bucket or the bus failing) so JetStream redelivers it."""
        try:
            await self._trigger(msg)
        except UnknownVendorError as exc:
            log.error(
                "reprovision trigger cannot succeed; dropped",
                extra={"subject": msg.subject, "error": str(exc)},
            )
            await _settle(msg.term())
            return
        except Exception as exc:
            attempts = msg.metadata.num_delivered or 1
            delay = min(self.retry_initial_seconds * 2 ** (attempts - 1), self.retry_max_seconds)
            log.warning(
                "reprovision trigger failed; redelivered later",
                extra={
                    "subject": msg.subject,
                    "error": repr(exc),
                    "delivery": attempts,
                    "retry_in_seconds": delay,
                },
            )
            await _settle(msg.nak(delay=delay))
            return
        await _settle(msg.ack())

    async def _trigger(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except EventDecodeError as exc:
            log.error("undecodable ledger event", extra={"subject": msg.subject, "error": str(exc)})
            return
        if not isinstance(event, LoggedIn | LoggedOut | Roamed):
            return
        seq = msg.metadata.sequence.stream
        with (
            process_span(
                _tracer,
                type(event).__name__,
                msg.subject,
                msg.headers,
                attributes={DESK: event.desk, "hotdesk.ledger.seq": seq},
            ),
            log_context(desk=event.desk),
        ):
            # The trigger may arrive before the follower saw the event: apply it here
            # too (by sequence, once) so the phone fetches the state the NOTIFY announces.
            self.seats.apply(event, seq)
            await self.reprovision(event.desk)

    async def reprovision(self, desk_name: str, *, unless_version: bool = False) -> None:
        """Render the desk's newest state and start its reprovision (superseding any
        other in flight for the desk, whichever replica started that one).

        With ``unless_version``, nothing starts when the reprovision in flight already
        targets the newest version: every replica hears a directory change, and only
        the first to write (compare-and-set) starts one.
        """
        with _tracer.start_as_current_span("reprovision", attributes={DESK: desk_name}):
            await self._reprovision(desk_name, unless_version=unless_version)

    async def _reprovision(self, desk_name: str, *, unless_version: bool) -> None:
        desk = self.ctx.directory.desk(desk_name)
        if desk is None:
            log.warning("ledger event for a desk not in the directory", extra={"desk": desk_name})
            return
        span = trace.get_current_span()
        with _tracer.start_as_current_span("render config", attributes={DESK: desk_name}):
            rendered = self.server.render_desk(desk)
        vendor, _ = self.server.vendor_of(desk)
        event = plugin(vendor).notify_event if vendor else DEFAULT_NOTIFY_EVENT
        reprovision_id = uuid.uuid4().hex
        version = rendered.version if rendered is not None else ""
        span.set_attributes(
            {
                "hotdesk.reprovision_id": reprovision_id,
                "hotdesk.config_version": version,
                "hotdesk.vendor": vendor,
            }
        )
        tracker = ReprovisionTracker(self.settings)
        actions = tracker.start(
            desk_name, reprovision_id, version, event, time.time(), trace=traceparent()
        )
        started = tracker.get(desk_name)
        assert started is not None
        store = self._require_store()
        async with self._lock(desk_name):
            if not unless_version:
                revision = await store.save(started, last=None)
            else:
                for _ in range(CAS_ATTEMPTS):
                    current, last = await store.load(desk_name)
                    if current is not None and current.config_version == version:
                        self._remember(desk_name, last, current)
                        return
                    try:
                        revision = await store.save(started, last=last)
                    except StateConflict:
                        continue
                    break
                else:
                    return
            self._remember(desk_name, revision, started)
        log.info(
            "reprovision started",
            extra={"desk": desk_name, "reprovision_id": reprovision_id, "config_version": version},
        )
        self._perform(actions)

    async def _directory_changed(self, old: Directory, new: Directory) -> None:
        """Reprovision every desk whose rendered files changed with the directory (a
        user's name or BLF keys, a dial code, the desk's own settings)."""
        changed: list[str] = []
        for desk in new.desks:
            try:
                rendered = self.server.render_desk(desk)
                if rendered is None:
                    continue  # vendor not known yet: the phone's first fetch gets the news
                before = old.desk(desk.name)
                previous = self.server.render_desk(before, old) if before is not None else None
            except Exception as exc:
                # One desk that does not render must not keep the others on old files.
                log.error(
                    "desk not rendered after a directory change",
                    extra={"desk": desk.name, "error": repr(exc)},
                )
                continue
            if previous is None or previous.version != rendered.version:
                changed.append(desk.name)
        if changed:
            log.info("directory change reprovisions desks", extra={"desks": len(changed)})
        for name in changed:
            try:
                await self.reprovision(name, unless_version=True)
            except Exception as exc:
                log.error(
                    "reprovision after a directory change failed",
                    extra={"desk": name, "error": repr(exc)},
                )

    # --- inputs -------------------------------------------------------------------------
    def _served(self, served: ServedFile) -> None:
        message = ConfigServed(
            at=datetime.fromtimestamp(served.at, UTC),
            origin=self.ctx.instance_id,
            desk=served.desk,
            config_version=served.config_version,
            filename=served.filename,
        )
        # Every replica hears it, this one included: the one holding the reprovision
        # may be any of them. The task starts in the fetch's span, and so continues it.
        self._spawn(self._publish_served(message))

    async def _publish_served(self, message: ConfigServed) -> None:
        subject = subjects.config_served(message.desk)
        with publish_span(_tracer, "ConfigServed", subject, attributes={DESK: message.desk}) as h:
            await self.ctx.nc.publish(subject, _command_encoder.encode(message), headers=h)

    def _trace_of(self, desk: str) -> str:
        """The trace of the desk's reprovision in flight (``""``: none)."""
        entry = self._in_flight.get(desk)
        return entry[1].trace if entry is not None else ""

    def _learned(self, desk: str, vendor: str, model: str) -> None:
        self._spawn(self._require_store().learn_vendor(desk, vendor, model))

    async def _fetched(self, msg: Msg) -> None:
        try:
            served = _served_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        if served.desk in self._in_flight:
            version, at = served.config_version, served.at.timestamp()
            newest = self._newest_version(served.desk)
            with process_span(
                _tracer, "ConfigServed", msg.subject, msg.headers, attributes={DESK: served.desk}
            ):
                await self._step_logged(
                    served.desk, lambda t, now: t.fetched(served.desk, version, at, newest=newest)
                )

    def _newest_version(self, desk_name: str) -> str:
        """The version the desk's files render to now ("" if unknown)."""
        desk = self.ctx.directory.desk(desk_name)
        rendered = self.server.render_desk(desk) if desk is not None else None
        return rendered.version if rendered is not None else ""

    async def _registration(self, msg: Msg) -> None:
        try:
            change = _registration_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        if change.kind in ("registered", "refreshed") and change.contacts:
            desk = change.aor
            if desk in self._in_flight:
                await self._step_logged(desk, lambda t, now: t.registered(desk, now))

    async def _drive(self) -> None:
        while not self.ctx.stopping.is_set():
            now = time.time()
            deadlines = [
                (r.deadline, desk)
                for desk, (_, r) in self._in_flight.items()
                if r.deadline is not None
            ]
            due = [desk for deadline, desk in deadlines if deadline <= now]
            failed = False
            for desk in due:
                try:
                    await self._step(desk, lambda t, now: t.tick(now))
                except Exception:
                    log.exception("reprovision deadline not handled", extra={"desk": desk})
                    failed = True
            if due and not failed:
                continue
            later = [deadline for deadline, _ in deadlines if deadline > now]
            timeout = None if not later else max(0.0, min(later) - time.time())
            if failed:
                timeout = 1.0  # The bus is failing: try again soon, not in a busy loop.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    # --- shared state -------------------------------------------------------------------
    def _state_changed(self, desk: str, revision: int, current: Reprovision | None) -> None:
        """A reprovision key changed (written by any replica, this one included)."""
        self._remember(desk, revision, current)
        self._wake.set()

    def _remember(self, desk: str, revision: int, current: Reprovision | None) -> None:
        # Revisions only move forward: a late copy of an older write (the follower
        # trails this replica's own writes) must not bring an ended reprovision back.
        seen = self._revisions.get(desk, 0)
        if revision < seen or (revision == seen and current is not None):
            return
        self._revisions[desk] = revision
        if current is None:
            self._in_flight.pop(desk, None)
        else:
            self._in_flight[desk] = (revision, current)

    def _lock(self, desk: str) -> asyncio.Lock:
        return self._locks.setdefault(desk, asyncio.Lock())

    def _require_store(self) -> ReprovisionStore:
        if self._store is None:
            raise StateError("the provisioner is not running: its state bucket is not open")
        return self._store

    async def _step_logged(self, desk: str, step: Step) -> None:
        """:meth:`_step` for bus callbacks: a failure is logged with the desk."""
        try:
            await self._step(desk, step)
        except Exception as exc:
            # The reprovision's deadline retries from the NOTIFY: nothing is stuck.
            log.error("reprovision step failed", extra={"desk": desk, "error": repr(exc)})

    async def _step(self, desk: str, step: Step) -> None:
        """Apply one input to the desk's stored reprovision by compare-and-set; only the
        replica whose write lands performs the resulting actions."""
        store = self._require_store()
        async with self._lock(desk):
            for _ in range(CAS_ATTEMPTS):
                before, revision = await store.load(desk)
                if before is None:
                    self._remember(desk, revision, None)
                    return
                tracker = ReprovisionTracker(self.settings)
                tracker.restore(_copy(before))
                actions = step(tracker, time.time())
                after = tracker.get(desk)
                if after == before and not actions:
                    self._remember(desk, revision, before)
                    return
                outcomes = [a for a in actions if isinstance(a, Confirmed | Failed)]
                for outcome in outcomes:
                    # Before the write: a replica dying in between leaves the step to
                    # another, whose publish the message id makes a duplicate.
                    await self._publish_outcome(outcome)
                try:
                    if after is None:
                        await store.remove(desk, last=revision)
                        self._remember(desk, revision, None)
                    else:
                        self._remember(desk, await store.save(after, last=revision), after)
                except StateConflict:
                    continue
                self._perform([a for a in actions if isinstance(a, SendNotify)])
                return
            log.warning("reprovision step contended, left to other replicas", extra={"desk": desk})

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
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The step is not lost: its deadline retries it, here or on another replica.
            log.error(
                "provisioner task failed",
                extra={"error": repr(task.exception())},
            )

    async def _send_notify(self, action: SendNotify) -> None:
        command = SendCheckSync(
            desk=action.desk, event=action.event, reprovision_id=action.reprovision_id
        )
        timeout = self.ctx.config.provisioning.stage_timeout_seconds
        # Retries too (started by a deadline, on any replica) belong to the reprovision's
        # trace, which the action carries.
        with publish_span(
            _tracer,
            "SendCheckSync",
            subjects.EDGE_COMMAND_ANY,
            context=context_of(action.trace),
            kind=SpanKind.CLIENT,
            attributes={
                DESK: action.desk,
                "hotdesk.reprovision_id": action.reprovision_id,
                "hotdesk.attempt": action.attempt,
            },
        ) as headers:
            try:
                reply = await self.ctx.nc.request(
                    subjects.EDGE_COMMAND_ANY,
                    _command_encoder.encode(command),
                    timeout=timeout,
                    headers=headers,
                )
                result = _result_decoder.decode(reply.data)
                status, contacts = result.status, result.contacts
            except (NoRespondersError, TimeoutError, msgspec.DecodeError) as exc:
                # No edge answered: a NOTIFY failure, retried like a phone that did not
                # answer.
                log.warning(
                    "check-sync not sent",
                    extra={
                        "desk": action.desk,
                        "reprovision_id": action.reprovision_id,
                        "error": type(exc).__name__,
                    },
                )
                status, contacts = 0, -1
            trace.get_current_span().set_attributes(
                {SIP_STATUS_CODE: status, "hotdesk.contacts": contacts}
            )
        await self._step(
            action.desk,
            lambda t, now: t.notify_answered(
                action.desk, action.reprovision_id, status, contacts, now
            ),
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
        # One outcome per reprovision, whichever replicas publish it: JetStream drops
        # a second publish with the same message id within the duplicate window.
        subject = subjects.provisioning_event(action.desk)
        with publish_span(
            _tracer,
            type(message).__name__,
            subject,
            context=context_of(action.trace),
            headers={"Nats-Msg-Id": f"reprovision-{action.reprovision_id}"},
            attributes={DESK: action.desk, "hotdesk.reprovision_id": action.reprovision_id},
        ) as headers:
            ack = await self.ctx.js.publish(subject, encode_message(message), headers=headers)
        if ack.duplicate:
            return
        self.metrics.outcome(action)
        extra = {
            "desk": action.desk,
            "reprovision_id": action.reprovision_id,
            "attempts": action.attempts,
        }
        if isinstance(action, Confirmed):
            log.info("reprovision confirmed", extra=extra)
        else:
            log.warning("reprovision failed", extra={**extra, "stage": action.stage})


async def _settle(ack: Coroutine[Any, Any, None]) -> None:
    """Ack, nak or term; if that fails the message comes back after the ack wait."""
    try:
        await ack
    except Exception as exc:
        log.warning("ledger event not settled", extra={"error": repr(exc)})


def _copy(reprovision: Reprovision) -> Reprovision:
    return dataclasses.replace(reprovision)


async def serve(ctx: ServiceContext) -> None:
    """Run the provisioner until ``ctx.stopping`` is set."""
    await Provisioner(ctx).run()
