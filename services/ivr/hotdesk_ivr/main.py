"""The IVR service: claims hot-desk calls from the edges and runs their call flows.

Dial events arrive on ``hotdesk.edge.dial.*`` through the ``hotdesk-ivr`` queue group, so
each call is claimed by exactly one IVR instance however many run. The instance then
follows that call's events, sends commands to the edge holding it, checks PINs and
writes the ledger. :class:`IvrCall` is the adapter around the pure
:class:`~hotdesk_ivr.flows.CallFlow`.

Each call runs in one ``ivr <feature>`` span that continues the trace the dial event's
headers carry (the edge's INVITE), so the commands it sends, its PIN check and its
ledger command belong to the login's trace; its logs carry the call, desk and trace.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from hotdesk_contracts import subjects
from hotdesk_contracts.commands import HangUp as HangUpCommand
from hotdesk_contracts.commands import LedgerCommand, PlayPrompts
from hotdesk_contracts.directory import Directory
from hotdesk_contracts.events import LedgerEvent
from hotdesk_contracts.messages import CallEnded, DtmfReceived, FeatureDialled, PromptsPlayed
from hotdesk_ledger.aggregates import DeskState, UserState
from hotdesk_ledger.errors import DomainError
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.seats import SeatIndex
from hotdesk_ledger.store import EventStore
from hotdesk_runtime import pins
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.logging import log_context
from hotdesk_runtime.telemetry import (
    DESK,
    FEATURE,
    SIP_CALL_ID,
    USER,
    extract_context,
    messaging_attributes,
    publish_span,
)

from . import flows, prompts
from .metrics import IvrMetrics

QUEUE_GROUP = "hotdesk-ivr"
READY_PARTS = ("seat-index", "prompts", "dial-queue")
"""What ``/readyz`` waits for: the seat index caught up, the prompt sets installed, the
queue subscription for dial events bound at the server."""
MAX_CALL_SECONDS = 600.0
"""A call whose end we never heard about is dropped after this long."""

PLAY_GUARD_SECONDS = 60.0
"""How long the IVR waits for the edge to report a play finished before it carries on
as if it had: an edge event lost on the way must not leave the flow (and the caller)
waiting for a digit timer that never starts. Longer than any prompt we play."""

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("hotdesk_ivr")


class LedgerPort(Protocol):
    """What the IVR needs of ``hotdesk_ledger.Ledger``."""

    async def desk(self, desk: str) -> DeskState: ...

    async def user(self, user: str, *, with_desk: bool = True) -> UserState: ...

    async def execute(
        self, command: LedgerCommand, *, now: datetime | None = None
    ) -> list[LedgerEvent]: ...


_dummy_hashes: dict[str, str] = {}


def _dummy(pepper: str) -> str:
    """A PIN hash of a random secret, made as ``hotdesk hash-pin`` makes real ones."""
    hit = _dummy_hashes.get(pepper)
    if hit is None:
        hit = _dummy_hashes[pepper] = pins.hash_pin(secrets.token_hex(16), pepper)
    return hit


def verify_pin(pin: str, pin_hash: str, pepper: str = "") -> bool:
    """Whether ``pin`` matches its PIN hash (see :mod:`hotdesk_runtime.pins`; run it in
    a thread: argon2 releases the GIL while it works).

    An empty ``pin_hash`` (an unknown extension, or one that may not log in) is checked
    against a dummy hash and is never right: it takes as long as a check of a hash
    ``hotdesk hash-pin`` made, so the time to "wrong PIN" does not tell whether the
    extension exists. Raises :class:`~hotdesk_runtime.pins.PepperMismatch` when the hash
    was peppered with another key than ``pepper``: that is no wrong PIN.
    """
    ok = pins.verify_pin_hash(pin_hash or _dummy(pepper), pin, pepper)
    return ok and bool(pin_hash)


class PinChecker:
    """Checks PINs in a thread pool of its own, beside the event loop.

    argon2 runs in C without the GIL, so checks use the other cores while the loop goes
    on claiming calls and relaying digits. The pool's size (one thread per core) bounds
    how many run at once: a burst of checks, or old hashes with heavy parameters, waits
    here instead of crowding the loop's core with more hashing threads than cores.
    """

    def __init__(self, pepper: str = "", *, workers: int | None = None) -> None:
        self.pepper = pepper
        self._pool = ThreadPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="pin-check"
        )

    async def check(self, pin: str, pin_hash: str) -> bool:
        """Whether ``pin`` matches ``pin_hash`` (see :func:`verify_pin`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, verify_pin, pin, pin_hash, self.pepper)

    async def warm(self) -> None:
        """Make the dummy hash now, so the first unknown extension waits no longer."""
        await asyncio.get_running_loop().run_in_executor(self._pool, _dummy, self.pepper)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def uncheckable_pins(directory: Directory, pepper: str) -> list[str]:
    """The extensions whose PIN hash ``pepper`` cannot check: peppered with another
    key, or peppered while no pepper is configured."""
    mine = pins.fingerprint(pepper) if pepper else None
    out = []
    for ext in directory.extensions:
        fp, _ = pins.split_pin_hash(ext.pin_hash)
        if fp is not None and fp != mine:
            out.append(ext.number)
    return out


def _report_uncheckable(directory: Directory, pepper: str) -> None:
    numbers = uncheckable_pins(directory, pepper)
    if numbers:
        log.error(
            "PIN hashes made with another pepper than pins.pepper: these users cannot log "
            "in until the pepper or their hashes are fixed",
            extra={"extensions": numbers[:20], "count": len(numbers)},
        )


def _now() -> datetime:
    return datetime.now(UTC)


class IvrCall:
    """One claimed call: feeds the flow, carries out its actions."""

    def __init__(
        self,
        *,
        nc: Client,
        ledger: LedgerPort,
        dialled: FeatureDialled,
        directory: Directory,
        clock: Callable[[], datetime] = _now,
        play_guard_seconds: float = PLAY_GUARD_SECONDS,
        pin_checker: PinChecker | None = None,
        trace_parent: otel_context.Context | None = None,
        dial_subject: str = "",
    ) -> None:
        self.nc = nc
        self._trace_parent = trace_parent
        """The trace the dial event carried (``None``: the current one)."""
        self._dial_subject = dial_subject or subjects.EDGE_DIAL_ALL
        self._play_guard_seconds = play_guard_seconds
        self._guards: dict[str, asyncio.TimerHandle] = {}
        self.ledger = ledger
        self.pin_checker = pin_checker
        self.dialled = dialled
        self.claim_id = uuid.uuid4().hex
        """This IVR's own id for the call, for its ledger commands (see CallFlow)."""
        self.flow = flows.CallFlow(dialled, directory, claim_id=self.claim_id)
        self.clock = clock
        self.inputs: asyncio.Queue[flows.FlowInput] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self._edge = subjects.edge_command(dialled.origin)
        self._fields = {
            "call_id": dialled.call_id,
            "desk": dialled.caller,
            "feature": dialled.feature,
            "claim_id": self.claim_id,
        }

    def _log(self, level: int, message: str, **fields: object) -> None:
        log.log(level, message, extra={**self._fields, **fields})

    async def run(self) -> None:
        """Follow the call until its flow is done (or it outlives ``MAX_CALL_SECONDS``)."""
        dialled = self.dialled
        with (
            _tracer.start_as_current_span(
                f"ivr {dialled.feature}",
                context=self._trace_parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    **messaging_attributes(self._dial_subject, "process"),
                    SIP_CALL_ID: dialled.call_id,
                    DESK: dialled.caller,
                    FEATURE: dialled.feature,
                },
            ) as span,
            log_context(call_id=dialled.call_id, desk=dialled.caller),
        ):
            try:
                await self._follow()
            finally:
                if self.flow.user is not None:
                    span.set_attribute(USER, self.flow.user)

    async def _follow(self) -> None:
        sub = await self.nc.subscribe(
            subjects.edge_call_events(self.dialled.call_id), cb=self._on_event
        )
        # Bound at the server before anything else: a call that ends while its first
        # lookup runs must still be heard ending (else the IVR waits for its digits).
        await self.nc.flush()
        span = trace.get_current_span()
        limit = asyncio.timeout(MAX_CALL_SECONDS)
        try:
            async with limit:
                await self._drive()
        except Exception as exc:
            if isinstance(exc, TimeoutError) and limit.expired():
                self._log(logging.ERROR, "call outlived the IVR's limit: dropped")
                span.set_status(trace.StatusCode.ERROR, "call outlived the IVR's limit")
                return
            # The bus or the ledger failed under us (a NATS request timing out while
            # a stream elects its leader is a TimeoutError too): tell the caller
            # rather than leave them listening to silence.
            log.exception("IVR call failed", extra=self._fields)
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
            await self._give_up()
        finally:
            self._cancel_timer()
            for guard in self._guards.values():
                guard.cancel()
            await sub.unsubscribe()

    async def _drive(self) -> None:
        # Subscribed before the first prompt is asked for, so no event of ours is missed.
        await self._carry_out(self.flow.start(self.clock()))
        while not self.flow.finished:
            event = await self.inputs.get()
            await self._carry_out(self.flow.handle(event, self.clock()))

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = msgspec.json.decode(msg.data, type=DtmfReceived | PromptsPlayed | CallEnded)
        except msgspec.ValidationError as exc:
            self._log(logging.ERROR, "undecodable call event", error=str(exc))
            return
        if event.call_id != self.dialled.call_id:
            # The subject is derived from the Call-ID; the event must still be ours.
            self._log(logging.WARNING, "event of another call ignored", other=event.call_id)
            return
        if isinstance(event, DtmfReceived):
            self.inputs.put_nowait(flows.Digit(event.digit))
        elif isinstance(event, PromptsPlayed):
            if event.missing:
                self._log(logging.ERROR, "prompts missing at the edge", prompts=event.missing)
            guard = self._guards.pop(event.play_id, None)
            if guard is not None:
                guard.cancel()
            self.inputs.put_nowait(flows.PromptsDone(event.play_id, event.completed))
        else:
            self.inputs.put_nowait(flows.CallGone())

    async def _carry_out(self, actions: list[flows.Action]) -> None:
        for action in actions:
            follow_up = await self._one(action)
            if follow_up is not None:
                await self._carry_out(self.flow.handle(follow_up, self.clock()))

    async def _one(self, action: flows.Action) -> flows.FlowInput | None:
        call_id = self.dialled.call_id
        if isinstance(action, flows.Play):
            await self._command(
                PlayPrompts(
                    call_id=call_id,
                    prompts=action.prompts,
                    barge_in=action.barge_in,
                    play_id=action.play_id,
                )
            )
            self._guards[action.play_id] = asyncio.get_running_loop().call_later(
                self._play_guard_seconds, self._play_unreported, action.play_id
            )
        elif isinstance(action, flows.HangUp):
            await self._command(HangUpCommand(call_id=call_id))
        elif isinstance(action, flows.StartDigitTimer):
            self._cancel_timer()
            token = action.token
            self._timer = asyncio.get_running_loop().call_later(
                action.seconds, self.inputs.put_nowait, flows.DigitTimeout(token)
            )
        elif isinstance(action, flows.CancelDigitTimer):
            self._cancel_timer()
        elif isinstance(action, flows.Lookup):
            return await self._lookup(action)
        elif isinstance(action, flows.VerifyPin):
            # The span says whose PIN and whether it was right; never the PIN.
            with _tracer.start_as_current_span("verify PIN") as span:
                ok = await self._check_pin(action.pin, action.pin_hash)
                span.set_attribute("hotdesk.pin_ok", ok)
                if self.flow.user is not None:
                    span.set_attribute(USER, self.flow.user)
                self._log(logging.INFO, "PIN checked", user=self.flow.user, ok=ok)
            return flows.PinChecked(ok)
        elif isinstance(action, flows.Execute):
            return await self._execute(action.command)
        return None

    async def _check_pin(self, pin: str, pin_hash: str) -> bool:
        if self.pin_checker is None:
            return await asyncio.to_thread(verify_pin, pin, pin_hash)
        return await self.pin_checker.check(pin, pin_hash)

    async def _lookup(self, action: flows.Lookup) -> flows.Facts:
        desk = await self.ledger.desk(action.desk)
        if action.user is None:
            return flows.Facts(desk_user=desk.user)
        user = await self.ledger.user(action.user)
        return flows.Facts(
            desk_user=desk.user,
            user_desk=user.desk,
            locked_out=user.locked_at(self.clock()),
        )

    async def _execute(self, command: LedgerCommand) -> flows.FlowInput:
        try:
            events = await self.ledger.execute(command)
        except DomainError as exc:
            self._log(logging.INFO, "ledger refused", command=type(command).__name__, code=exc.code)
            return flows.CommandFailed(exc.code)
        except Exception:
            log.exception(
                "ledger command failed", extra={**self._fields, "command": type(command).__name__}
            )
            return flows.CommandFailed("error")
        return flows.CommandDone(events)

    async def _give_up(self) -> None:
        language = self.flow.language
        try:
            await self._command(
                PlayPrompts(
                    call_id=self.dialled.call_id, prompts=[f"{language}/error"], barge_in=False
                )
            )
            await self._command(HangUpCommand(call_id=self.dialled.call_id))
        except Exception:
            log.exception("could not end the failed call", extra=self._fields)

    async def _command(self, command: msgspec.Struct) -> None:
        with publish_span(
            _tracer,
            type(command).__name__,
            self._edge,
            attributes={SIP_CALL_ID: self.dialled.call_id},
        ) as headers:
            await self.nc.publish(self._edge, msgspec.json.encode(command), headers=headers)

    def _play_unreported(self, play_id: str) -> None:
        self._guards.pop(play_id, None)
        self._log(logging.WARNING, "the edge never reported a play: carrying on", play_id=play_id)
        self.inputs.put_nowait(flows.PromptsDone(play_id, completed=False))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Ivr:
    """Claims calls from the dial subject and runs one :class:`IvrCall` per call."""

    def __init__(
        self,
        nc: Client,
        ledger: LedgerPort,
        directory: Callable[[], Directory],
        *,
        play_guard_seconds: float = PLAY_GUARD_SECONDS,
        pin_checker: PinChecker | None = None,
    ) -> None:
        self.nc = nc
        self.play_guard_seconds = play_guard_seconds
        self.ledger = ledger
        self.pin_checker = pin_checker
        self.directory = directory
        self.calls: dict[str, asyncio.Task[None]] = {}
        self._dialled: dict[str, FeatureDialled] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(
            subjects.EDGE_DIAL_ALL, queue=QUEUE_GROUP, cb=self._on_dial
        )

    async def _on_dial(self, msg: Msg) -> None:
        try:
            dialled = msgspec.json.decode(msg.data, type=FeatureDialled)
        except msgspec.ValidationError as exc:
            log.error("undecodable dial event", extra={"error": str(exc)})
            return
        running = self.calls.get(dialled.call_id)
        if running is not None:
            if self._dialled.get(dialled.call_id) == dialled:
                return  # the same dial event twice
            # A new call reusing the Call-ID: the edge holds one dialog per Call-ID, so
            # the call we still follow is over even if its end has not reached us yet.
            running.cancel()
        call = IvrCall(
            nc=self.nc,
            ledger=self.ledger,
            dialled=dialled,
            directory=self.directory(),
            play_guard_seconds=self.play_guard_seconds,
            pin_checker=self.pin_checker,
            trace_parent=extract_context(msg.headers),
            dial_subject=msg.subject,
        )
        task = asyncio.create_task(call.run())
        self.calls[dialled.call_id] = task
        self._dialled[dialled.call_id] = dialled

        def forget(done: asyncio.Task[None]) -> None:
            if self.calls.get(dialled.call_id) is done:
                del self.calls[dialled.call_id]
                self._dialled.pop(dialled.call_id, None)

        task.add_done_callback(forget)

    async def drain(self, seconds: float, poll: float = 0.1) -> int:
        """Claim no more calls (the queue group hands them to the other IVRs) and let
        the calls in progress finish, for at most ``seconds``; the calls still running."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        if not self.calls or seconds <= 0:
            return len(self.calls)
        log.info(
            "stopping: no new calls claimed, waiting for the calls in progress",
            extra={"calls": len(self.calls), "drain_seconds": seconds},
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.calls and loop.time() < deadline:
            await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))
        if self.calls:
            log.warning(
                "stopping: calls still running after the drain time are cut off",
                extra={"calls": len(self.calls)},
            )
        else:
            log.info("stopping: every call ended")
        return len(self.calls)

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        for task in list(self.calls.values()):
            task.cancel()
        await asyncio.gather(*self.calls.values(), return_exceptions=True)


async def serve(ctx: ServiceContext) -> None:
    """Run the IVR until ``ctx.stopping`` is set."""
    ctx.expect(*READY_PARTS)
    store = EventStore(ctx.js)
    await store.ensure_stream()
    ledger = Ledger(store, ctx.directory.policies)
    pepper = ctx.config.pins.pepper
    checker = PinChecker(pepper)
    # Logins find the user's seats in memory instead of reading every desk's last event.
    seat_index = SeatIndex(ctx.js)
    await seat_index.start()
    ctx.ready_when("seat-index", seat_index.caught_up)
    ledger.seat_index = seat_index
    _report_uncheckable(ctx.directory, pepper)

    async def directory_changed(_old: Directory, new: Directory) -> None:
        ledger.policies = new.policies
        _report_uncheckable(new, pepper)

    ctx.on_directory_change(directory_changed)
    roots = [prompts.BUNDLED_DIR]
    if ctx.config.prompts_dir:  # extra (e.g. recorded) sets; they win over bundled ids
        roots.append(Path(ctx.config.prompts_dir))
    installed = await prompts.install_bundled(ctx.js, roots=roots)
    ctx.set_ready("prompts", True)
    ctx.log.info("prompt sets ready", extra={"installed": installed})
    ivr = Ivr(ctx.nc, ledger, lambda: ctx.directory, pin_checker=checker)
    await ivr.start()
    await ctx.subscriptions_bound()  # dial events reach us from now on
    ctx.set_ready("dial-queue", True)
    polling = asyncio.create_task(
        IvrMetrics(ctx.js, seat_index, lambda: len(ivr.calls)).poller.run(ctx.stopping)
    )
    await checker.warm()
    # Start-up's objects live as long as the process: keep full collections off them.
    gc.collect()
    gc.freeze()
    try:
        await ctx.stopping.wait()
        await ivr.drain(ctx.config.sip.drain_seconds)
    finally:
        polling.cancel()
        await ivr.close()
        checker.close()
        await seat_index.stop()
