"""Folds over bus events (edge registrations and call states, reprovision outcomes).

``hotdesk_ledger.projection.ProjectionRunner`` decodes ledger events only, so the folds
over ``HOTDESK_EDGE`` and ``HOTDESK_PROVISIONING`` run here, with the same guarantees:
one durable consumer per (projection, stream) so each event goes to one replica; every
key stores the stream sequences it has applied, so a redelivered event is skipped; writes
are compare-and-set on the KV revision and re-folded when another replica got there first.

A fold picks its keys from the event and the subject it was published on: the edge
publishes one call-state event once per party (``edge_call_state(party)``), and each copy
must change only the party its subject names, or every party is written once per copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)


class BusFold(Protocol[T, E_contra]):
    """A pure fold over bus events of type ``event_type`` into a KV read model."""

    name: str
    bucket: str
    sources: Sequence[tuple[str, str]]
    """``(stream, filter subject)`` pairs to read."""
    value_type: type[T]
    event_type: Any
    """The msgspec type (often a tagged union) the events decode to."""

    def keys(self, event: E_contra, subject: str) -> Sequence[str]:
        """The keys ``event``, as published on ``subject``, changes."""
        ...

    def apply(self, key: str, current: T | None, event: E_contra, seq: int) -> T | None:
        """The key's new value. Pure."""
        ...


class BusStored(msgspec.Struct, Generic[T], frozen=True):
    """A key's value with the last sequence applied from each stream."""

    applied: dict[str, int]
    value: T | None = None


def bus_fold(fold: BusFold[T, E], events: Sequence[tuple[int, str, E]]) -> dict[str, T]:
    """The read model ``fold`` yields from ``(seq, subject, event)`` messages, in memory."""
    model: dict[str, T | None] = {}
    for seq, subject, event in events:
        for key in fold.keys(event, subject):
            model[key] = fold.apply(key, model.get(key), event, seq)
    return {k: v for k, v in model.items() if v is not None}


_RETRYABLE = (NatsTimeout, asyncio.TimeoutError, ConnectionClosedError, NoRespondersError)


class BusProjectionRunner(Generic[T, E]):
    """Runs a :class:`BusFold`: durable consumers feeding its KV bucket."""

    def __init__(
        self,
        js: JetStreamContext,
        fold: BusFold[T, E],
        *,
        batch_size: int = 256,
        fetch_wait: float = 1.0,
        max_write_retries: int = 5,
    ) -> None:
        self.js = js
        self.fold = fold
        self.batch_size = batch_size
        self.fetch_wait = fetch_wait
        self.max_write_retries = max_write_retries
        self._kv: KeyValue | None = None
        self._subs: dict[str, Any] = {}
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(fold.event_type)
        self._stored_decoder = msgspec.json.Decoder(BusStored[fold.value_type])  # type: ignore[name-defined]

    def durable(self, stream: str) -> str:
        """The durable consumer's name on ``stream``."""
        return f"{self.fold.name}-{stream}"

    async def start(self) -> None:
        """Create (idempotently) the bucket and the durable consumers."""
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(self.fold.bucket)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(
                    js_api.KeyValueConfig(bucket=self.fold.bucket, history=1)
                )
        for stream, subject in self.fold.sources:
            if stream in self._subs:
                continue
            self._subs[stream] = await self.js.pull_subscribe(
                subject,
                durable=self.durable(stream),
                stream=stream,
                config=js_api.ConsumerConfig(
                    ack_policy=js_api.AckPolicy.EXPLICIT,
                    deliver_policy=js_api.DeliverPolicy.ALL,
                    ack_wait=30.0,
                ),
            )

    async def stop(self) -> None:
        """Drop the subscriptions (the durable consumers stay)."""
        for sub in self._subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    async def process(self, wait: float | None = None) -> int:
        """Fetch and apply one batch from every source; return events applied."""
        await self.start()
        applied = 0
        for stream, sub in list(self._subs.items()):
            try:
                msgs = await sub.fetch(self.batch_size, timeout=wait or self.fetch_wait)
            except NatsTimeout:
                continue
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                applied += await self.apply_delivery(stream, seq, msg.data, msg.subject)
                await msg.ack()
        return applied

    async def catch_up(self) -> int:
        """Apply until no source has anything pending."""
        await self.start()
        total = 0
        while True:
            pending = 0
            for stream in self._subs:
                info = await self.js.consumer_info(stream, self.durable(stream))
                pending += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            if pending == 0:
                return total
            total += await self.process(wait=0.5)

    async def run(self, stopping: asyncio.Event) -> None:
        """Apply events as they arrive until ``stopping`` is set; ride out NATS errors."""
        while not stopping.is_set():
            try:
                await self.process()
            except (*_RETRYABLE, JetStreamError, NatsError) as exc:
                # Reconnecting, a restarted server, a consumer being recreated: retry.
                log.warning(
                    "bus projection paused on a NATS error",
                    extra={"projection": self.fold.name, "error": repr(exc)},
                )
                self._subs.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 0.5)
        await self.stop()

    async def apply_delivery(self, stream: str, seq: int, data: bytes, subject: str) -> int:
        """Apply one message delivered on ``subject`` (stream sequence ``seq``); 0 if
        skipped."""
        try:
            event = self._decoder.decode(data)
        except msgspec.DecodeError:
            # Other event types share these subjects (e.g. unknown devices): not ours.
            return 0
        count = 0
        for key in self.fold.keys(event, subject):
            count = max(count, await self._write(key, stream, seq, event))
        return count

    async def _write(self, key: str, stream: str, seq: int, event: E) -> int:
        assert self._kv is not None
        for _attempt in range(self.max_write_retries):
            stored, revision = await self._read(key)
            applied = dict(stored.applied) if stored else {}
            if applied.get(stream, 0) >= seq:
                return 0  # a redelivery: already in the read model
            value = self.fold.apply(key, stored.value if stored else None, event, seq)
            applied[stream] = seq
            data = msgspec.json.encode(BusStored(applied=applied, value=value))
            try:
                if revision is None:
                    await self._kv.create(key, data)
                else:
                    await self._kv.update(key, data, last=revision)
            except KeyWrongLastSequenceError:
                continue
            return 1
        raise RuntimeError(f"projection {self.fold.name}: key {key} kept changing")

    async def _read(self, key: str) -> tuple[BusStored[T] | None, int | None]:
        assert self._kv is not None
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None, None
        if not entry.value:
            return None, entry.revision
        return self._stored_decoder.decode(entry.value), entry.revision

    async def get(self, key: str) -> T | None:
        """The current value of ``key``."""
        await self.start()
        stored, _ = await self._read(key)
        return stored.value if stored else None
