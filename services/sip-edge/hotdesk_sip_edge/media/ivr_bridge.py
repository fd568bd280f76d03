"""The edge's half of an IVR call: between one answered call's media and the bus.

The SIP side answers a call to a hot-desk code, opens the call with
:meth:`IvrBridge.answer_call` (which opens the :class:`MediaSession` and gives the SDP
answer for the 200 OK), calls :meth:`IvrBridge.start` once the 200 OK is sent,
:meth:`IvrBridge.on_info` for each SIP INFO and :meth:`IvrBridge.on_bye` when the
phone hangs up. The bridge publishes the dial, DTMF, played and ended events, and
carries out the IVR's commands, which :class:`IvrCommandRouter` delivers from the
edge's command subject.

The bridge keeps the trace context it was opened in (the INVITE's span): every event
it publishes is a ``publish <Event>`` span of that trace, its context in the message
headers; each command is handled in a ``process <Command>`` span continuing the
trace its headers carry.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import context as otel_context
from opentelemetry import trace

from hotdesk_contracts import subjects
from hotdesk_contracts.commands import EdgeCommand, HangUp, PlayPrompts, StopPlayback
from hotdesk_contracts.messages import CallEnded, DtmfReceived, FeatureDialled, PromptsPlayed
from hotdesk_runtime.telemetry import SIP_CALL_ID, process_span, publish_span

from .session import MediaSession, PromptSource

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("hotdesk_sip_edge")

SendBye = Callable[[], Awaitable[None] | None]
CLAIM_TIMEOUT_SECONDS = 5.0
"""How long a call waits for an IVR instance to send its first command."""
NO_IVR_PROMPT = "en/error"
PLAYOUT_GRACE_SECONDS = 0.3
"""Silence sent after the last prompt before the BYE: the phone's jitter buffer still
holds the prompt's last packets, and a BYE now would cut the end of the sentence."""
MAX_CALL_SECONDS = 300.0
"""An IVR call still up after this long is hung up (an IVR that died mid-call would
otherwise leave the phone listening to silence for ever)."""

IVR_SILENCE_SECONDS = 16.0
"""How long after a prompt finished the bridge waits for the IVR's next command (or a
key press) before it gives up on the IVR: twice the default PIN digit timeout, so an
IVR that is alive has always answered by then."""

_HANGUP = object()
_HANGUP_NOW = object()
_STOP = object()
"""Ends the command worker once the call has ended (rather than cancelling it, which
would leave a traceback cycle per call for the garbage collector)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class IvrBridge:
    """Maps IVR commands to media actions and media events to bus publications, for
    one call."""

    def __init__(
        self,
        *,
        nc: Client,
        edge_id: str,
        call_id: str,
        send_bye: SendBye,
        clock: Callable[[], datetime] = _utc_now,
        claim_timeout: float = CLAIM_TIMEOUT_SECONDS,
        max_call_seconds: float = MAX_CALL_SECONDS,
        ivr_silence_seconds: float = IVR_SILENCE_SECONDS,
    ) -> None:
        self.nc = nc
        self._ivr_silence_seconds = ivr_silence_seconds
        self._silence: asyncio.TimerHandle | None = None
        self._max_call_seconds = max_call_seconds
        self._limit: asyncio.TimerHandle | None = None
        self.edge_id = edge_id
        self.call_id = call_id
        self._send_bye = send_bye
        self._clock = clock
        self._claim_timeout = claim_timeout
        self.media: MediaSession | None = None
        self._queue: asyncio.Queue[PlayPrompts | object] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._claim: asyncio.TimerHandle | None = None
        self._claimed = False
        self._dtmf_seq = 0
        self._early_digits: list[DtmfReceived] = []
        self._played_any = False
        self.ended: str | None = None
        """Why the call ended, once it has."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_ended: Callable[[IvrBridge], None] | None = None
        """Called once the call is over (the router uses it to forget the call)."""
        self.trace_context = otel_context.get_current()
        """The trace the call's events belong to: the one current when it was opened."""

    @classmethod
    async def answer_call(
        cls,
        *,
        nc: Client,
        edge_id: str,
        call_id: str,
        send_bye: SendBye,
        offer: bytes,
        local_host: str,
        port_range: tuple[int, int],
        prompts: PromptSource,
        media_timeout: float,
        claim_timeout: float = CLAIM_TIMEOUT_SECONDS,
        max_call_seconds: float = MAX_CALL_SECONDS,
        bind_host: str | None = None,
        peer_hosts: Collection[str] = (),
        ivr_silence_seconds: float = IVR_SILENCE_SECONDS,
    ) -> IvrBridge:
        """Open the call's media for ``offer``; ``bridge.media.answer`` is the SDP answer.

        ``local_host`` is advertised in the SDP answer, the RTP socket binds to
        ``bind_host`` (default ``local_host``; the edge passes ``sip.listen``).
        RTP is taken only from the offer's address or ``peer_hosts`` (the edge passes
        the INVITE's source host, so phones behind NAT work).
        When no IVR command and no key press comes for ``ivr_silence_seconds`` after
        a prompt finished, the IVR is taken for lost: the caller hears the error prompt
        and is hung up on (the edge passes twice ``policies.pin_digit_timeout_seconds``).
        Raises what :meth:`MediaSession.open` raises (``NoCommonCodec`` → 488).
        """
        bridge = cls(
            nc=nc,
            edge_id=edge_id,
            call_id=call_id,
            send_bye=send_bye,
            claim_timeout=claim_timeout,
            max_call_seconds=max_call_seconds,
            ivr_silence_seconds=ivr_silence_seconds,
        )
        bridge.media = await MediaSession.open(
            offer=offer,
            local_host=local_host,
            port_range=port_range,
            prompts=prompts,
            on_dtmf=bridge.on_dtmf,
            on_media_timeout=bridge.on_media_timeout,
            media_timeout=media_timeout,
            call_id=call_id,
            bind_host=bind_host,
            peer_hosts=peer_hosts,
        )
        return bridge

    @property
    def answer(self) -> bytes:
        """The SDP answer for the 200 OK."""
        assert self.media is not None, "open the media first"
        return self.media.answer

    # --- from the SIP side --------------------------------------------------------------
    async def start(
        self, *, caller: str, dialled: str, feature: str, argument: str = "", via_key: bool = False
    ) -> None:
        """The call is answered: hand it to the IVR (one instance claims it)."""
        self._worker = asyncio.create_task(self._play_commands())
        loop = asyncio.get_running_loop()
        self._claim = loop.call_later(self._claim_timeout, self._unclaimed)
        self._limit = loop.call_later(self._max_call_seconds, self._too_long)
        await self._publish(
            subjects.edge_dial(caller),
            FeatureDialled(
                at=self._clock(),
                origin=self.edge_id,
                call_id=self.call_id,
                caller=caller,
                dialled=dialled,
                feature=feature,
                argument=argument,
                via_key=via_key,
            ),
        )

    def on_info(self, content_type: str, body: bytes) -> None:
        """A SIP INFO arrived. Raises ``DtmfInfoError`` if it carries no digit (the SIP
        side then answers 415 or 400 as it sees fit)."""
        if self.media is not None:
            self.media.dtmf_from_info(content_type, body)

    async def on_bye(self) -> None:
        """The phone hung up (BYE or CANCEL answered): tell the IVR, free the media."""
        await self._end("bye")

    # --- from the media -----------------------------------------------------------------
    def on_dtmf(self, digit: str, source: str) -> None:
        if self._silence is not None:
            self._watch_ivr()  # the IVR restarts its digit timer on each key: so do we
        self._dtmf_seq += 1
        event = DtmfReceived(
            at=self._clock(),
            origin=self.edge_id,
            call_id=self.call_id,
            digit=digit,
            source=source,
            seq=self._dtmf_seq,
        )
        if not self._claimed:
            # No IVR has claimed the call yet, so none may be listening to its events:
            # a caller typing ahead of a busy IVR would lose digits. The IVR subscribes
            # before its first command, so they go out when that command arrives.
            self._early_digits.append(event)
            return
        self._spawn(self._publish(subjects.edge_call_event(self.call_id, "dtmf"), event))

    def on_media_timeout(self) -> None:
        log.info("media stopped: hanging up", extra={"call_id": self.call_id})
        self._spawn(self._hang_up("media-timeout"))

    # --- from the IVR -------------------------------------------------------------------
    async def command(self, command: EdgeCommand) -> None:
        """Carry out one command of the IVR for this call."""
        if self.ended is not None:
            return
        self._stop_watching_ivr()
        if not self._claimed:
            self._claimed = True
            if self._claim is not None:
                self._claim.cancel()
                self._claim = None
            for early in self._early_digits:
                self._spawn(self._publish(subjects.edge_call_event(self.call_id, "dtmf"), early))
            self._early_digits.clear()
        if isinstance(command, PlayPrompts):
            self._queue.put_nowait(command)
        elif isinstance(command, StopPlayback):
            self._drop_queued()
            if self.media is not None:
                self.media.stop_playback()
        elif isinstance(command, HangUp):
            if command.now:
                self._drop_queued()
                if self.media is not None:
                    self.media.stop_playback()
            self._queue.put_nowait(_HANGUP_NOW if command.now else _HANGUP)

    def _unclaimed(self) -> None:
        if self._claimed or self.ended is not None:
            return
        log.error("no IVR claimed the call", extra={"call_id": self.call_id})
        self._claimed = True
        self._queue.put_nowait(PlayPrompts(call_id=self.call_id, prompts=[NO_IVR_PROMPT]))
        self._queue.put_nowait(_HANGUP)

    def _watch_ivr(self) -> None:
        """(Re)arm the wait for the IVR's next command."""
        self._stop_watching_ivr()
        if self.ended is None:
            loop = asyncio.get_running_loop()
            self._silence = loop.call_later(self._ivr_silence_seconds, self._ivr_silent)

    def _stop_watching_ivr(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None

    def _ivr_silent(self) -> None:
        self._silence = None
        if self.ended is not None or not self._queue.empty():
            return
        # The IVR died, or an event or command was lost: without this the caller would
        # listen to silence until the call's time limit.
        log.error("the IVR went silent: hanging up", extra={"call_id": self.call_id})
        self._queue.put_nowait(PlayPrompts(call_id=self.call_id, prompts=[NO_IVR_PROMPT]))
        self._queue.put_nowait(_HANGUP)

    def _too_long(self) -> None:
        log.error("IVR call lasted too long: hanging up", extra={"call_id": self.call_id})
        self._spawn(self._hang_up("hangup"))

    def _drop_queued(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, PlayPrompts):
                self._spawn(self._played(item, completed=False, missing=[]))

    async def _play_commands(self) -> None:
        while self.ended is None:
            item = await self._queue.get()
            if item is _STOP:
                return
            if item is _HANGUP or item is _HANGUP_NOW:
                if item is _HANGUP and self._played_any and self.media is not None:
                    await self.media.play_silence(PLAYOUT_GRACE_SECONDS)
                await self._hang_up("hangup")
                return
            assert isinstance(item, PlayPrompts)
            if self.media is None:
                continue
            result = await self.media.play(item.prompts, barge_in=item.barge_in)
            if self.ended is not None:
                return  # cut short by the end of the call: nobody waits for it
            self._played_any = True
            if self._queue.empty():
                self._watch_ivr()
            await self._played(item, completed=result.completed, missing=result.missing)

    async def _played(self, play: PlayPrompts, *, completed: bool, missing: list[str]) -> None:
        await self._publish(
            subjects.edge_call_event(self.call_id, "played"),
            PromptsPlayed(
                at=self._clock(),
                origin=self.edge_id,
                call_id=self.call_id,
                play_id=play.play_id,
                completed=completed,
                missing=missing,
            ),
        )

    async def _hang_up(self, reason: str) -> None:
        if self.ended is not None:
            return
        result = self._send_bye()
        if inspect.isawaitable(result):
            await result
        await self._end(reason)

    async def _end(self, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = reason
        for timer in (self._claim, self._limit):
            if timer is not None:
                timer.cancel()
        # Dropped, like every reference that leads back to the bridge, so a call's
        # objects go when the call does instead of waiting for a garbage collection
        # (whose pauses would hold up every other call's RTP).
        self._claim = self._limit = None
        self._stop_watching_ivr()
        if self.media is not None:
            await self.media.close()
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._queue.put_nowait(_STOP)
        if self.on_ended is not None:
            self.on_ended(self)
        await self._publish(
            subjects.edge_call_event(self.call_id, "ended"),
            CallEnded(at=self._clock(), origin=self.edge_id, call_id=self.call_id, reason=reason),
        )

    async def _publish(self, subject: str, message: msgspec.Struct) -> None:
        with publish_span(
            _tracer,
            type(message).__name__,
            subject,
            context=self.trace_context,
            attributes={SIP_CALL_ID: self.call_id},
        ) as headers:
            await self.nc.publish(subject, msgspec.json.encode(message), headers=headers)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class IvrCommandRouter:
    """Subscribes to this edge's command subject and hands each call's commands to its
    bridge. Commands that are not about an IVR call (``SendCheckSync``) go to
    ``other``."""

    def __init__(
        self,
        nc: Client,
        edge_id: str,
        other: Callable[[EdgeCommand], Awaitable[None]] | None = None,
    ) -> None:
        self.nc = nc
        self.edge_id = edge_id
        self.other = other
        self.bridges: dict[str, IvrBridge] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(subjects.edge_command(self.edge_id), cb=self._on_msg)

    def add(self, bridge: IvrBridge) -> None:
        """Route commands for ``bridge``'s call to it until the call ends."""
        self.bridges[bridge.call_id] = bridge
        bridge.on_ended = lambda b: self.remove(b.call_id)

    def remove(self, call_id: str) -> None:
        self.bridges.pop(call_id, None)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            command = msgspec.json.decode(msg.data, type=EdgeCommand)
        except msgspec.ValidationError as exc:
            log.error("undecodable edge command", extra={"error": str(exc)})
            return
        with process_span(_tracer, type(command).__name__, msg.subject, msg.headers):
            if isinstance(command, PlayPrompts | StopPlayback | HangUp):
                trace.get_current_span().set_attribute(SIP_CALL_ID, command.call_id)
                bridge = self.bridges.get(command.call_id)
                if bridge is None:
                    log.info("command for an unknown call", extra={"call_id": command.call_id})
                    if not isinstance(command, HangUp):
                        await self._gone(command.call_id)
                    return
                await bridge.command(command)
            elif self.other is not None:
                await self.other(command)

    async def _gone(self, call_id: str) -> None:
        """Tell the IVR that asked that the call is not here (it ended before the IVR
        claimed it and heard its ``CallEnded``): it stops waiting for digits."""
        ended = CallEnded(at=_utc_now(), origin=self.edge_id, call_id=call_id, reason="gone")
        with publish_span(
            _tracer, "CallEnded", subjects.edge_call_event(call_id, "ended")
        ) as headers:
            await self.nc.publish(
                subjects.edge_call_event(call_id, "ended"),
                msgspec.json.encode(ended),
                headers=headers,
            )

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
