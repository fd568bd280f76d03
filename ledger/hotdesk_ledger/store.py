"""The event store: the ``HOTDESK_LEDGER`` JetStream stream, one subject per aggregate.

Appends use JetStream's optimistic concurrency: each message carries
``Nats-Expected-Last-Subject-Sequence`` (the stream sequence of the last message on the
subject when the aggregate was loaded, 0 for a new subject) and ``Nats-Msg-Id`` (the
event id, derived from the command id). The server answers error 10071 when the subject
moved on, which becomes :class:`~hotdesk_ledger.errors.ConcurrencyConflict`; a message
id seen inside the stream's duplicate window is acknowledged as a duplicate and stored
nothing.

Reads of many messages use short-lived ephemeral pull consumers (see :mod:`.snapshot`):
the consumer's ``num_pending`` at creation is a consistent snapshot, so a read fetches
exactly that many messages and knows the last sequence it saw without racing later
appends.

A lookup reads only what the state needs: :meth:`EventStore.last` fetches one subject's
last message with a single ``STREAM.MSG.GET`` (``last_by_subj``), which is all a desk
needs (its last event carries its whole state); :meth:`EventStore.newest_first` walks a
subject backwards one direct get at a time, so a user lookup stops after the few events
its state depends on. The walk starts at the last message as the stream leader reports
it; the older messages it then reads are settled on every replica, so a direct get
served by a follower cannot miss them. :attr:`EventStore.messages_read` counts every
message fetched, so tests and metrics can see what a lookup costs.

While a stream elects a leader (a node of the cluster died) requests go unanswered for
a few seconds. An append that got no answer is sent again, the same message with the
same ``Nats-Msg-Id`` and expected sequence, up to ``publish_attempts`` times: if the
first one was stored and only its answer was lost, the second meets error 10071 (the
server checks the expected sequence before the duplicate window) and the store finds
its own event as the subject's last, so the append succeeds once and stores once. The
one-message lookup (:meth:`EventStore.last`) is retried the same way.

An event this build cannot decode (a newer version or enum value during a rolling
upgrade) must not break every lookup: :meth:`EventStore.read` and :meth:`EventStore.load`
skip it and log it, and :meth:`EventStore.last` / :meth:`EventStore.last_of_each`
return it as an :class:`UnreadableEvent`, so the caller can treat that one aggregate as
unknown while everything else keeps working.

An append made inside a trace (the IVR's login, a ledger command's span) publishes
each message inside a ``publish <Event>`` producer span and the message carries that
span's W3C trace context in its ``traceparent`` header, so whoever consumes the event
(the provisioner's reprovision trigger, say) continues the trace of the login that
wrote it. An append outside any trace starts none.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServiceUnavailableError
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hotdesk_contracts import streams
from hotdesk_contracts.codec import EventDecodeError, decode_event, encode_event
from hotdesk_contracts.events import LedgerEvent

from .connection import client_of
from .errors import ConcurrencyConflict
from .snapshot import read_snapshot

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("hotdesk_ledger")
# W3C Trace Context, as hotdesk_runtime.telemetry propagates it (the ledger is below
# the runtime, so it holds its own propagator).
_PROPAGATOR = TraceContextTextMapPropagator()

WRONG_LAST_SEQUENCE = 10071
"""JetStream API error code: ``Nats-Expected-Last-Subject-Sequence`` did not match."""

UNANSWERED = (TimeoutError, NoRespondersError, NoStreamResponseError, ServiceUnavailableError)
"""What a request meets while its stream has no leader: no answer in time, nobody
listening, or JetStream's 503. Asking again later is safe for a read and, with the
same message id, for an append."""

PUBLISH_ATTEMPTS = 3
"""How many times an append or a lookup is sent before its failure is the caller's."""

RETRY_PAUSE = 0.5
"""Seconds before the second attempt; doubled before each one after."""


@dataclass(frozen=True)
class StoredEvent:
    """An event as read back from the stream, with where it sits."""

    seq: int
    """Stream sequence (what ``Nats-Expected-Last-Subject-Sequence`` compares with)."""
    subject: str
    event: LedgerEvent


_ALL = js_api.DeliverPolicy.ALL


class DirectGetError(Exception):
    """The server answered a direct get with an error status."""


@dataclass(frozen=True)
class UnreadableEvent:
    """A stored message this build cannot decode (e.g. written by a newer version)."""

    seq: int
    subject: str
    error: str


@dataclass(frozen=True)
class AppendResult:
    """What an append did: the events stored and the subject's new last sequence."""

    last_seq: int
    """Stream sequence of the last message now on the subject (pass it to the next
    append as the expected sequence)."""
    stored: list[StoredEvent] = field(default_factory=list)
    duplicates: int = 0
    """Events the server had already stored under the same message id (not re-stored)."""


def stream_config(
    spec: streams.StreamSpec = streams.LEDGER, replicas: int = 1
) -> js_api.StreamConfig:
    """The nats-py configuration of a stream spec (see
    :func:`hotdesk_contracts.streams.stream_api_config`, the one definition)."""
    config: js_api.StreamConfig = js_api.StreamConfig.from_response(
        streams.stream_api_config(spec, replicas)
    )
    return config


class EventStore:
    """Append-only event store on one JetStream stream (``HOTDESK_LEDGER`` by default)."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: streams.StreamSpec = streams.LEDGER,
        *,
        publish_attempts: int = PUBLISH_ATTEMPTS,
        retry_pause: float = RETRY_PAUSE,
    ) -> None:
        if publish_attempts < 1:
            raise ValueError(f"publish_attempts must be at least 1, not {publish_attempts}")
        self.js = js
        self.spec = spec
        self.stream = spec.name
        self.publish_attempts = publish_attempts
        self.retry_pause = retry_pause
        self.messages_read = 0
        """Messages fetched from the stream so far (by reads and last-message gets)."""
        self.retries = 0
        """Requests sent again after they went unanswered (see the module's notes)."""

    async def ensure_stream(self) -> None:
        """Create the stream if it does not exist yet (idempotent, keeps what exists)."""
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(stream_config(self.spec))

    async def last_seq(self) -> int:
        """The stream's last sequence (0 when empty)."""
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def load(self, subject: str) -> tuple[list[LedgerEvent], int]:
        """Every event on ``subject`` in order, and the subject's last stream sequence.

        The sequence is 0 when the subject has no events: pass it unchanged to
        :meth:`append` as ``expected_last_subject_seq``.
        """
        stored = await self.read(subject)
        return [s.event for s in stored], (stored[-1].seq if stored else 0)

    async def last(self, subject: str) -> StoredEvent | UnreadableEvent | None:
        """The last event on ``subject`` (``None`` if the subject has none): one message."""
        for attempt in range(self.publish_attempts):
            try:
                msg = await self.js.get_last_msg(self.stream, subject)
                break
            except NotFoundError:
                return None
            except UNANSWERED as exc:
                await self._pause_or_raise(attempt, "lookup", subject, exc)
        self.messages_read += 1
        return self._decode(int(msg.seq or 0), subject, msg.data or b"")

    def _decode(self, seq: int, subject: str, data: bytes) -> StoredEvent | UnreadableEvent:
        try:
            return StoredEvent(seq=seq, subject=subject, event=decode_event(data))
        except EventDecodeError as exc:
            log.error(
                "ledger event cannot be decoded by this build",
                extra={"stream": self.stream, "subject": subject, "seq": seq, "error": str(exc)},
            )
            return UnreadableEvent(seq=seq, subject=subject, error=str(exc))

    async def read(
        self,
        filter_subject: str,
        deliver_policy: js_api.DeliverPolicy = js_api.DeliverPolicy.ALL,
    ) -> list[StoredEvent]:
        """Read the events matching ``filter_subject`` that exist now, in stream order.

        With ``DeliverPolicy.LAST_PER_SUBJECT`` and a wildcard filter this returns the
        last event of every matching subject (how the store finds who sits where).
        Events this build cannot decode are logged and left out.
        """
        out: list[StoredEvent] = []
        for seq, subject, data in await self._read_raw(filter_subject, deliver_policy):
            found = self._decode(seq, subject, data)
            if isinstance(found, StoredEvent):
                out.append(found)
        return out

    async def newest_first(self, subject: str) -> AsyncIterator[StoredEvent | UnreadableEvent]:
        """The events of ``subject`` from the last one backwards, fetched one by one.

        The caller stops when it has what it needs, so a lookup reads a bounded tail
        however long the history. Each step is a direct get of the subject's last
        message at or below a sequence (``multi_last`` with ``up_to_seq``, nats-server
        2.11+), which needs ``allow_direct`` on the stream; without it the subject is
        read in full and handed out backwards.
        """
        found = await self.last(subject)
        while found is not None:
            yield found
            here = found.seq
            if here <= 1:
                return
            try:
                found = await self._last_before(subject, here)
            except NoRespondersError:
                log.info(
                    "ledger stream does not allow direct gets: reading the subject in full",
                    extra={"stream": self.stream, "subject": subject},
                )
                for seq, subj, data in reversed(await self._read_raw(subject, _ALL)):
                    if seq < here:
                        yield self._decode(seq, subj, data)
                return

    async def _last_before(self, subject: str, seq: int) -> StoredEvent | UnreadableEvent | None:
        request = json.dumps({"multi_last": [subject], "up_to_seq": seq - 1}).encode()
        msg = await client_of(self.js).request(
            f"$JS.API.DIRECT.GET.{self.stream}", request, timeout=5.0
        )
        headers = msg.headers or {}
        if headers.get("Status") == "404":
            return None
        if headers.get("Status"):
            raise DirectGetError(
                f"direct get on {self.stream} failed: {headers.get('Status')}"
                f" {headers.get('Description', '')}"
            )
        self.messages_read += 1
        return self._decode(int(headers["Nats-Sequence"]), subject, msg.data)

    async def _read_raw(
        self, filter_subject: str, deliver_policy: js_api.DeliverPolicy
    ) -> list[tuple[int, str, bytes]]:
        msgs = await read_snapshot(self.js, self.stream, filter_subject, deliver_policy)
        self.messages_read += len(msgs)
        return [(m.metadata.sequence.stream, m.subject, m.data) for m in msgs]

    async def last_of_each(self, filter_subject: str) -> dict[str, StoredEvent | UnreadableEvent]:
        """The last message of each subject matching ``filter_subject``, decoded or not."""
        raw = await self._read_raw(filter_subject, js_api.DeliverPolicy.LAST_PER_SUBJECT)
        return {subject: self._decode(seq, subject, data) for seq, subject, data in raw}

    async def last_per_subject(self, filter_subject: str) -> dict[str, StoredEvent]:
        """The last event of each subject matching the wildcard ``filter_subject``."""
        stored = await self.read(filter_subject, js_api.DeliverPolicy.LAST_PER_SUBJECT)
        return {s.subject: s for s in stored}

    async def append(
        self,
        subject: str,
        events: Sequence[LedgerEvent],
        expected_last_subject_seq: int | None,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AppendResult:
        """Append ``events`` to ``subject`` if its last sequence is still the expected one.

        ``expected_last_subject_seq`` is what :meth:`load` returned (0 for a new
        subject; ``None`` appends unconditionally). Each event is published with
        ``Nats-Msg-Id`` = its ``event_id`` (or ``<msg_id>:<index>`` when ``msg_id`` is
        given); later events of the same call expect the sequence of the one before.
        ``headers`` are added to every message; each message carries the trace
        context of its own ``publish`` span unless ``headers`` bring a ``traceparent``
        (then that one is stored as given and the span continues it).

        Raises :class:`ConcurrencyConflict` on JetStream error 10071. A duplicate is
        not an error: it stores nothing and counts in ``duplicates``.
        """
        expected = expected_last_subject_seq
        result_stored: list[StoredEvent] = []
        duplicates = 0
        last = expected or 0
        given = dict(headers or {})
        parent = _PROPAGATOR.extract(given) if "traceparent" in given else None
        # An append continues the caller's trace; it starts none of its own (the
        # benchmark's bare appends and replays pay nothing for tracing).
        traced = parent is not None or trace.get_current_span().get_span_context().is_valid
        for index, event in enumerate(events):
            hdrs = dict(given)
            hdrs["Nats-Msg-Id"] = f"{msg_id}:{index}" if msg_id else event.event_id
            if expected is not None:
                hdrs["Nats-Expected-Last-Subject-Sequence"] = str(expected)
            if traced:
                ack = await self._publish_traced(subject, event, hdrs, expected, parent)
            else:
                ack = await self._publish(subject, event, hdrs, expected)
            if ack.duplicate:
                duplicates += 1
                log.info(
                    "ledger append deduplicated",
                    extra={"subject": subject, "msg_id": hdrs["Nats-Msg-Id"], "seq": ack.seq},
                )
            else:
                result_stored.append(StoredEvent(seq=ack.seq, subject=subject, event=event))
            last = ack.seq
            if expected is not None:
                expected = ack.seq
        return AppendResult(last_seq=last, stored=result_stored, duplicates=duplicates)

    async def _publish(
        self, subject: str, event: LedgerEvent, headers: dict[str, str], expected: int | None
    ) -> js_api.PubAck:
        payload = encode_event(event)
        for attempt in range(self.publish_attempts):
            try:
                ack: js_api.PubAck = await self.js.publish(subject, payload, headers=headers)
                return ack
            except UNANSWERED as exc:
                await self._pause_or_raise(attempt, "append", subject, exc)
            except APIError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
                if attempt:
                    # Sent before without an answer: it may be ours that moved the subject.
                    ours = await self._stored_already(subject, event)
                    if ours is not None:
                        return ours
                raise ConcurrencyConflict(subject, expected, exc.description or "") from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _stored_already(self, subject: str, event: LedgerEvent) -> js_api.PubAck | None:
        """The acknowledgement ``event`` would have had, if it is the subject's last."""
        found = await self.last(subject)
        if isinstance(found, StoredEvent) and found.event.event_id == event.event_id:
            log.info(
                "ledger append was stored before its answer was lost",
                extra={"subject": subject, "event_id": event.event_id, "seq": found.seq},
            )
            return js_api.PubAck(stream=self.stream, seq=found.seq)
        return None

    async def _pause_or_raise(
        self, attempt: int, what: str, subject: str, exc: BaseException
    ) -> None:
        """After an unanswered request: raise ``exc`` if it was the last attempt, else
        wait (longer each time) before the next one."""
        if attempt + 1 >= self.publish_attempts:
            raise exc
        self.retries += 1
        log.warning(
            f"ledger {what} got no answer: asking again",
            extra={
                "subject": subject,
                "attempt": attempt + 1,
                "error": type(exc).__name__,
                "stream": self.stream,
            },
        )
        await asyncio.sleep(self.retry_pause * 2**attempt)

    async def _publish_traced(
        self,
        subject: str,
        event: LedgerEvent,
        headers: dict[str, str],
        expected: int | None,
        parent: otel_context.Context | None,
    ) -> js_api.PubAck:
        """:meth:`_publish` in a ``publish <Event>`` producer span whose context the
        message carries (unless the caller's headers bring their own ``traceparent``)."""
        span = _tracer.start_span(
            f"publish {type(event).__name__}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": subject,
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.message.id": headers["Nats-Msg-Id"],
            },
        )
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            if parent is None:
                _PROPAGATOR.inject(headers)
            try:
                ack = await self._publish(subject, event, headers, expected)
            except ConcurrencyConflict:
                # An outcome the handler retries, not a failed publish.
                span.set_attribute("hotdesk.conflict", True)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("hotdesk.ledger.seq", ack.seq)
        return ack
