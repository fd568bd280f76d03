"""Projections: pure folds over ledger events into KV read models, run by durable consumers.

A :class:`Projection` says which ledger subjects it reads, which read-model keys an
event touches, and how one event changes one key's value (``apply``, pure). The
:class:`ProjectionRunner` does the I/O:

* one **durable** pull consumer per projection on ``HOTDESK_LEDGER``, so with several
  replicas of a service each event is handed to one of them. The consumer takes one
  pull request at a time, and a batch is applied only when nothing before it is
  unapplied (it continues the consumer's ack floor, or it is all that is in flight),
  so batches are applied in stream order across replicas (see ``_in_order``); of a
  batch that stays out of order, the part that continues the floor is applied and the
  rest handed back (negatively acknowledged) to come again with what it waits for;
* for each batch: order it by stream sequence (each sequence once: a handed-back
  message can come again after later ones), decode, group events by key, read each
  key's stored value (cached between batches), fold the key's events in order, and
  write the key **once** with the stream sequence of the last event applied to it
  (the value is stored as ``{"applied_seq": n, "value": ...}``). An event whose
  sequence is not above the stored ``applied_seq`` is skipped, so a redelivered batch
  (the process died after writing some keys but before acking) is never applied twice;
* writes are compare-and-set on the key's KV revision; if another replica wrote the key
  meanwhile (a redelivery overlapping a slow batch) the key is re-read and re-folded;
* after the writes, a checkpoint (``applied_seq`` of the batch) goes to the
  ``hotdesk_projections`` bucket under the projection's name, then the batch is acked
  (ack policy *all*: acking the last message acks the batch);
* once the server confirmed the ack, ``on_applied`` (if given) is called with the
  batch's events the projection reads. Across replicas each event reaches it once: a
  batch whose ack failed is redelivered and reported by whoever applies it then (only
  an ack the server took but whose confirmation was lost leaves a batch unreported).

:meth:`ProjectionRunner.rebuild` deletes the consumer, the bucket's contents and the
checkpoint, then replays the ledger from the start, reporting progress to a callback.
It is refused (:class:`ProjectionBusy`) while other runners use the consumer: a replica
mid-batch would write keys into the emptied bucket with its batch's sequence, and the
replay would skip everything up to it for those keys.
Read a model with :meth:`ProjectionRunner.get` / :meth:`ProjectionRunner.items` (one
consistent snapshot of the bucket, see :mod:`.snapshot`), or decode the KV entries
yourself with :func:`decode_stored`.

A bucket belongs to exactly one projection (rebuild empties it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from hotdesk_contracts import streams
from hotdesk_contracts.codec import EventDecodeError, decode_event
from hotdesk_contracts.events import LedgerEvent

from .connection import client_of, plain_auth
from .pull import Delivery, PullConnectionError, RawPull
from .snapshot import read_snapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

Progress = Callable[[int, int], None]
"""Called as ``progress(applied, total)`` while a projection catches up."""


class Stored(msgspec.Struct, Generic[T], frozen=True):
    """What a read-model key holds: the value and the last ledger sequence folded in.

    ``value`` is ``None`` when ``apply`` removed the key's value; the entry is kept so
    that ``applied_seq`` still guards against applying an event twice.
    """

    applied_seq: int
    value: T | None = None


class Checkpoint(msgspec.Struct, frozen=True):
    """A projection's progress: the stream sequence of the last batch it applied."""

    applied_seq: int


class Projection(Protocol[T]):
    """A pure fold over ledger events into a KV read model.

    Implementations hold no I/O: the runner reads and writes the bucket.
    """

    name: str
    """Stable name: durable consumer ``projection-<name>`` and the checkpoint key.
    Letters, digits, ``-`` and ``_`` only."""
    bucket: str
    """The KV bucket the read model lives in (owned by this projection alone)."""
    filter_subjects: Sequence[str]
    """Ledger subjects to read, e.g. ``[subjects.LEDGER_DESKS]`` (wildcards allowed).
    Matched by the runner, not the server: see ``_ensure_consumer``."""
    value_type: type[T]
    """The msgspec-encodable type of a key's value (usually a frozen Struct)."""

    def keys(self, event: LedgerEvent) -> Sequence[str]:
        """The read-model keys ``event`` changes (empty: the event is not relevant)."""
        ...

    def apply(self, key: str, current: T | None, event: LedgerEvent, seq: int) -> T | None:
        """The key's new value after ``event`` (stream sequence ``seq``). Pure."""
        ...


def fold(projection: Projection[T], events: Iterable[tuple[int, LedgerEvent]]) -> dict[str, T]:
    """The read model a projection yields from ``(seq, event)`` pairs, in memory.

    The reference the runner must agree with; keys whose value is ``None`` are left out.
    """
    model: dict[str, T | None] = {}
    for seq, event in events:
        for key in projection.keys(event):
            model[key] = projection.apply(key, model.get(key), event, seq)
    return {k: v for k, v in model.items() if v is not None}


def decode_stored(projection: Projection[T], data: bytes) -> Stored[T]:
    """Decode a read-model KV entry written by the runner."""
    stored: Stored[T] = msgspec.json.decode(data, type=Stored[projection.value_type])  # type: ignore[name-defined]
    return stored


def subject_matches(subject: str, pattern: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    tokens = subject.split(".")
    wanted = pattern.split(".")
    for i, w in enumerate(wanted):
        if w == ">":
            return len(tokens) > i
        if i >= len(tokens) or (w != "*" and w != tokens[i]):
            return False
    return len(tokens) == len(wanted)


def stream_seq(reply: str) -> int:
    """The stream sequence from a JetStream delivery's ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (9 tokens)
    or, with a domain and account hash, ``$JS.ACK.<domain>.<hash>.<stream>.<consumer>.
    <delivered>.<sseq>.<cseq>.<ts>.<pending>.<token>`` (12 tokens). Parsed by hand:
    nats-py's ``Msg.metadata`` costs more than the rest of a replay step.
    """
    tokens = reply.split(".", 8)
    if len(tokens) == 9 and "." not in tokens[8]:
        return int(tokens[5])
    tokens = reply.split(".")
    if len(tokens) >= 11:
        return int(tokens[7])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")


NAK_AFTER_A_MOMENT = b'-NAK {"delay": 200000000}'
"""A negative acknowledgement asking for redelivery after 0.2 s (the delay in ns)."""


def in_stream_order(msgs: Sequence[Delivery]) -> list[Delivery]:
    """A batch as the stream holds it: ordered by stream sequence, each sequence once.

    A message handed back (or redelivered after its ack wait) can come in one batch
    after later ones, and twice when an earlier delivery of it was still waiting in
    the batch; folded in arrival order, a key's later event would be applied first and
    its earlier one then skipped as already applied. The last delivery of a sequence
    is kept (its ack subject is the current one)."""
    latest: dict[int, Delivery] = {}
    for msg in msgs:
        latest[stream_seq(msg[1])] = msg
    return [latest[seq] for seq in sorted(latest)]


def continuing(seqs: Sequence[int], floor: int) -> int:
    """How many of ``seqs``, from the first, continue the ack ``floor`` without a gap."""
    count = 0
    for seq in seqs:
        if seq != floor + 1 + count:
            break
        count += 1
    return count


class ProjectionError(Exception):
    """The runner could not make progress (e.g. a key kept changing under it)."""


class ProjectionBusy(ProjectionError):
    """A rebuild was refused because other runners are using the projection's consumer.

    A replica in the middle of a batch would write keys into the emptied bucket with
    its batch's sequence, and the replay would then skip everything before it for
    those keys: stop every replica of the projection, then rebuild.
    """

    def __init__(self, projection: str, waiting: int, in_flight: int) -> None:
        super().__init__(
            f"projection {projection} is in use: {waiting} pull request(s) waiting and"
            f" {in_flight} event(s) delivered but not acknowledged; stop its other"
            " runners before rebuilding (a batch left by a runner that died is"
            " redelivered after ack_wait)"
        )
        self.projection = projection
        self.waiting = waiting
        self.in_flight = in_flight


_RETRYABLE = (
    NatsTimeout,
    asyncio.TimeoutError,
    ConnectionClosedError,
    NoRespondersError,
    JetStreamError,
    PullConnectionError,
)


class _Entry:
    __slots__ = ("revision", "stored")

    def __init__(self, stored: Stored[Any] | None, revision: int | None) -> None:
        self.stored = stored
        self.revision = revision


class ProjectionRunner(Generic[T]):
    """Runs one projection: a durable consumer feeding a KV read model.

    Typical use in a service::

        runner = ProjectionRunner(ctx.js, DeskOccupancy())
        await runner.start()
        await runner.run(ctx.stopping)
    """

    def __init__(
        self,
        js: JetStreamContext,
        projection: Projection[T],
        *,
        stream: str = streams.LEDGER.name,
        checkpoint_bucket: str = streams.PROJECTIONS.bucket,
        batch_size: int = 1000,
        fetch_wait: float = 1.0,
        ack_wait: float = 30.0,
        write_concurrency: int = 256,
        max_write_retries: int = 5,
        fast_pull: bool = True,
        on_applied: Callable[[Sequence[LedgerEvent]], None] | None = None,
    ) -> None:
        self.js = js
        self.projection = projection
        self.stream = stream
        self.checkpoint_bucket = checkpoint_bucket
        self.batch_size = batch_size
        self.fetch_wait = fetch_wait
        self.ack_wait = ack_wait
        self.write_concurrency = write_concurrency
        self.max_write_retries = max_write_retries
        self.fast_pull = fast_pull
        """Pull batches over a lean connection of our own (see :mod:`.pull`) where the
        NATS connection allows it (plain TCP, user/password or token)."""
        self.on_applied = on_applied
        """Called with each acknowledged batch's events (those the projection reads)."""
        self._raw: RawPull | None = None
        self._nc = client_of(js)
        self.consumer = f"projection-{projection.name}"
        self._decoder = msgspec.json.Decoder(Stored[projection.value_type])  # type: ignore[name-defined]
        self._encoder = msgspec.json.Encoder()
        self._cache: dict[str, _Entry] = {}
        self._wanted_subjects: dict[str, bool] = {}
        self._kv: KeyValue | None = None
        self._checkpoints: KeyValue | None = None
        self._sub: Subscription | None = None
        self._inbox = ""
        self._batch: list[Delivery] = []
        self._batch_done = asyncio.Event()
        self._wanted = 0

    # --- setup --------------------------------------------------------------------------
    async def start(self) -> None:
        """Create (idempotently) the buckets and the durable consumer; subscribe."""
        self._kv = await self._bucket(self.projection.bucket)
        self._checkpoints = await self._bucket(self.checkpoint_bucket)
        await self._ensure_consumer()
        if self.fast_pull and self._raw is None:
            self._raw = await self._open_raw_pull()
        if self._raw is None and self._sub is None:
            self._inbox = self._nc.new_inbox()
            self._sub = await self._nc.subscribe(
                self._inbox,
                cb=self._on_msg,
                pending_msgs_limit=max(4 * self.batch_size, 65536),
                pending_bytes_limit=256 * 1024 * 1024,
            )

    async def _open_raw_pull(self) -> RawPull | None:
        auth = plain_auth(client_of(self.js))
        if auth is None:
            self.fast_pull = False
            return None
        raw = RawPull(auth.url, user=auth.user, password=auth.password, token=auth.token)
        try:
            await raw.connect()
        except PullConnectionError as exc:
            log.warning(
                "projection falls back to nats-py pulls",
                extra={"projection": self.projection.name, "error": str(exc)},
            )
            self.fast_pull = False
            return None
        return raw

    async def stop(self) -> None:
        """Close our connections (the durable consumer stays for the next start)."""
        if self._raw is not None:
            await self._raw.close()
            self._raw = None
        if self._sub is not None:
            with contextlib.suppress(ConnectionClosedError):
                await self._sub.unsubscribe()
            self._sub = None

    async def _bucket(self, name: str) -> KeyValue:
        try:
            return await self.js.key_value(name)
        except BucketNotFoundError:
            return await self.js.create_key_value(js_api.KeyValueConfig(bucket=name, history=1))

    async def _ensure_consumer(self) -> None:
        # No server-side filter: nats-server delivers a whole stream several times
        # faster than through a wildcard filter (measured ~4x), and the events a
        # projection does not read are skipped in _apply by subject.
        config = js_api.ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_policy=js_api.AckPolicy.ALL,
            ack_wait=self.ack_wait,
            max_ack_pending=self.batch_size,
            # One pull request at a time across all replicas: a batch is then always
            # a consecutive run of the stream, never interleaved with another
            # replica's (a second request is refused with 409 and retried).
            max_waiting=1,
            description=f"projection {self.projection.name} -> KV {self.projection.bucket}",
        )
        await self.js.add_consumer(self.stream, config)

    # --- fetching -----------------------------------------------------------------------
    async def _on_msg(self, msg: Msg) -> None:
        # A status message (408 request expired, 409 consumer changed) ends the pull.
        if not msg.data and msg.headers and msg.headers.get("Status"):
            if msg.headers.get("Status") != "100":
                self._batch_done.set()
            return
        self._batch.append((msg.subject, msg.reply, msg.data))
        if len(self._batch) >= self._wanted:
            self._batch_done.set()

    async def _fetch(self, wait: float, limit: int | None = None) -> list[Delivery]:
        """Pull up to ``batch_size`` (or ``limit``) messages, waiting at most ``wait``.

        nats-py's ``fetch`` costs tens of microseconds per message; a pull request on
        our own inbox with a callback that only collects keeps replay fast.
        """
        if self._sub is None and self._raw is None:
            await self.start()
        size = min(self.batch_size, limit) if limit else self.batch_size
        api = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}"
        if self._raw is not None:
            try:
                return await self._raw.pull(api, size, wait)
            except PullConnectionError:
                # Lost (e.g. the server restarted): reconnect on the next start().
                await self._raw.close()
                self._raw = None
                raise
        # Messages that arrived after the previous pull returned stay at the front:
        # dropping them would let the next ack (policy "all") acknowledge them unseen.
        wanted = size - len(self._batch)
        if wanted > 0:
            self._batch_done.clear()
            self._wanted = size
            request = {"batch": wanted, "expires": int(wait * 1e9)}
            await self._nc.publish(
                api,
                json.dumps(request).encode(),
                reply=self._inbox,
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._batch_done.wait(), wait + 2.0)
        msgs, self._batch = self._batch, []
        return msgs

    # --- applying -----------------------------------------------------------------------
    async def process_batch(self, wait: float | None = None, limit: int | None = None) -> int:
        """Fetch one batch (at most ``limit`` events), apply it, checkpoint, ack.

        Returns the number of events applied (0 when none came or the batch had to
        wait for an earlier one)."""
        wait = self.fetch_wait if wait is None else wait
        msgs = await self._fetch(wait, limit)
        if not msgs:
            # Also what a refused pull (another replica's is waiting) looks like.
            await asyncio.sleep(0.05)
            return 0
        seqs = [stream_seq(reply) for _, reply, _ in msgs]
        if not all(a < b for a, b in itertools.pairwise(seqs)):
            # Rare (a handed-back message came again behind later ones): a replay's
            # batches are in order and pay only this check.
            msgs = in_stream_order(msgs)
            seqs = [stream_seq(reply) for _, reply, _ in msgs]
        in_order, floor = await self._in_order(seqs)
        if not in_order:
            # Apply the part that continues the ack floor (acking it acknowledges only
            # what is applied) and hand the rest back at once. Left to time out, the
            # pieces of a batch come back at different times, each too short to be
            # applied alone, for ever: seen after a replica died holding a batch.
            keep = continuing(seqs, floor)
            await self._hand_back([reply for _, reply, _ in msgs[keep:]])
            if not keep:
                log.info(
                    "projection hands a batch back to come again after an earlier one",
                    extra={"projection": self.projection.name, "first_seq": seqs[0]},
                )
                return 0
            msgs, seqs = msgs[:keep], seqs[:keep]
        await self._apply(msgs, seqs)
        return len(msgs)

    async def _hand_back(self, replies: list[str]) -> None:
        """Negatively acknowledge deliveries: redelivered at the next pull, not after
        ``ack_wait`` (a short delay keeps a runner from pulling them straight back)."""
        for reply in replies:
            if reply.startswith("$JS.ACK."):
                await self._nc.publish(reply, NAK_AFTER_A_MOMENT)

    async def _in_order(self, seqs: list[int]) -> tuple[bool, int]:
        """Whether a batch may be applied and acked now, and the ack floor last seen.

        Acking with policy "all" acknowledges every earlier delivery too, and a key's
        events must be folded in stream order. So a batch is applied only when nothing
        before it is still unapplied: either it continues the consumer's ack floor
        without a gap (the consumer takes the whole stream, which is never rewritten,
        so stream sequences are consecutive), or it is all that is delivered and
        unacked. Otherwise an earlier batch is in flight elsewhere: we hold ours and
        look again until half of ``ack_wait`` has passed, then give it up to be
        redelivered, in order, with the earlier one.
        """
        contiguous = all(b == a + 1 for a, b in itertools.pairwise(seqs))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_wait / 2
        while True:
            info = await self.js.consumer_info(self.stream, self.consumer)
            floor = int(info.ack_floor.stream_seq) if info.ack_floor else 0
            if contiguous and seqs[0] == floor + 1:
                return True, floor
            if int(info.num_ack_pending or 0) <= len(seqs):
                return True, floor
            if loop.time() >= deadline:
                return False, floor
            await asyncio.sleep(0.05)

    async def _apply(self, msgs: list[Delivery], seqs: list[int]) -> None:
        by_key: dict[str, list[tuple[int, LedgerEvent]]] = {}
        wanted = self._wanted_subjects
        keys_of = self.projection.keys
        applied: list[LedgerEvent] | None = [] if self.on_applied is not None else None
        for (subject, _, data), seq in zip(msgs, seqs, strict=True):
            relevant = wanted.get(subject)
            if relevant is None:
                relevant = wanted[subject] = any(
                    subject_matches(subject, f) for f in self.projection.filter_subjects
                )
            if not relevant:
                continue
            try:
                event = decode_event(data)
            except EventDecodeError as exc:
                # A newer event type than this build knows: skip it loudly rather than
                # stall every replica on it; a rebuild after upgrading picks it up.
                log.error(
                    "projection skipped an undecodable event",
                    extra={"projection": self.projection.name, "seq": seq, "error": str(exc)},
                )
                continue
            if applied is not None:
                applied.append(event)
            for key in keys_of(event):
                group = by_key.get(key)
                if group is None:
                    by_key[key] = [(seq, event)]
                else:
                    group.append((seq, event))
        last_seq = seqs[-1]
        keys = list(by_key)
        for start in range(0, len(keys), self.write_concurrency):
            chunk = keys[start : start + self.write_concurrency]
            await self._load(k for k in chunk if k not in self._cache)
            await asyncio.gather(*(self._write(k, by_key[k]) for k in chunk))
        assert self._checkpoints is not None
        await self._checkpoints.put(
            self.projection.name, self._encoder.encode(Checkpoint(applied_seq=last_seq))
        )
        # Ack policy "all": acking the last message acks the whole batch. Wait for the
        # server to confirm, so the next batch's in-flight check sees this one gone.
        ack = msgs[-1][1]
        if not ack.startswith("$JS.ACK."):
            raise ProjectionError(f"delivery without a JetStream ack subject: {ack!r}")
        await self._nc.request(ack, b"+ACK", timeout=5.0)
        if applied and self.on_applied is not None:
            self.on_applied(applied)

    async def _load(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        entries = await asyncio.gather(*(self._read(k) for k in wanted))
        for key, entry in zip(wanted, entries, strict=True):
            self._cache[key] = entry

    async def _read(self, key: str) -> _Entry:
        assert self._kv is not None
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return _Entry(None, None)
        if entry.value is None:
            return _Entry(None, entry.revision)
        return _Entry(self._decoder.decode(entry.value), entry.revision)

    async def _write(self, key: str, events: list[tuple[int, LedgerEvent]]) -> None:
        assert self._kv is not None
        for _attempt in range(self.max_write_retries):
            entry = self._cache[key]
            stored = entry.stored
            applied = stored.applied_seq if stored is not None else 0
            value = stored.value if stored is not None else None
            changed = False
            for seq, event in events:
                if seq <= applied:
                    continue  # already in the read model: a redelivery
                value = self.projection.apply(key, value, event, seq)
                applied = seq
                changed = True
            if not changed:
                return
            new = Stored(applied_seq=applied, value=value)
            data = self._encoder.encode(new)
            try:
                if entry.revision is None:
                    revision = await self._kv.create(key, data)
                else:
                    revision = await self._kv.update(key, data, last=entry.revision)
            except KeyWrongLastSequenceError:
                # Someone else wrote the key (an overlapping redelivery): re-read, re-fold.
                self._cache[key] = await self._read(key)
                continue
            self._cache[key] = _Entry(new, revision)
            return
        raise ProjectionError(
            f"projection {self.projection.name}: key {key} kept changing during the write"
        )

    # --- driving ------------------------------------------------------------------------
    async def pending(self) -> int:
        """Events not yet applied: undelivered plus delivered but not acked."""
        info = await self.js.consumer_info(self.stream, self.consumer)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def catch_up(self, progress: Progress | None = None) -> int:
        """Apply batches until the ledger as it was at the call is applied; return how
        many events were applied.

        The goal is the stream's last sequence when the call starts, and progress is
        the consumer's ack floor; neither depends on when the server has counted a
        fresh consumer's backlog (its ``num_pending``), which the runner no longer
        relies on. Events delivered to a runner that died are redelivered after
        ``ack_wait``, so this waits for them too.
        """
        await self.start()
        target = int((await self.js.stream_info(self.stream)).state.last_seq)
        applied = 0
        total = 0
        while True:
            info = await self.js.consumer_info(self.stream, self.consumer)
            floor = int(info.ack_floor.stream_seq) if info.ack_floor else 0
            remaining = max(target - floor, 0)
            total = max(total, applied + remaining)
            if progress:
                progress(applied, total)
            if remaining == 0:
                return applied
            applied += await self.process_batch(limit=remaining)

    async def run(self, stopping: asyncio.Event) -> None:
        """Apply events as they arrive until ``stopping`` is set.

        Survives nats-server restarts and reconnects: a failed pull or write is logged
        and retried after a short pause (nothing is acked that was not written). An
        exception from the projection itself ends the run: its batch stays unacked
        and is redelivered, after ``ack_wait``, to whichever runner pulls next.
        """
        while not stopping.is_set():
            try:
                await self.start()
                await self.process_batch()
            except _RETRYABLE as exc:
                self._cache.clear()
                log.warning(
                    "projection paused on a NATS error",
                    extra={"projection": self.projection.name, "error": repr(exc)},
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 0.5)
        await self.stop()

    async def rebuild(self, progress: Progress | None = None, *, idle_timeout: float = 0.0) -> int:
        """Forget the read model and replay the ledger from the start.

        Refused with :class:`ProjectionBusy` while other runners use the durable
        consumer: the consumer must show no waiting pull request and nothing in
        flight for ``fetch_wait`` + 0.5 s (a running replica pulls again within that
        time), waiting at most ``idle_timeout`` seconds (default: three such
        periods) for that quiet stretch. Then deletes the durable consumer, purges the
        bucket and the checkpoint, recreates the consumer and catches up. Returns the
        number of events applied.
        """
        await self.start()
        await self._wait_until_unused(idle_timeout or 3 * (self.fetch_wait + 0.5))
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(self.stream, self.consumer)
        await self.js.purge_stream(f"KV_{self.projection.bucket}")
        assert self._checkpoints is not None
        with contextlib.suppress(KeyNotFoundError):
            await self._checkpoints.purge(self.projection.name)
        self._cache.clear()
        await self._ensure_consumer()
        return await self.catch_up(progress)

    async def _wait_until_unused(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        quiet_for = self.fetch_wait + 0.5
        start = quiet_since = loop.time()
        while True:
            try:
                info = await self.js.consumer_info(self.stream, self.consumer)
            except NotFoundError:
                return
            now = loop.time()
            waiting = int(info.num_waiting or 0)
            in_flight = int(info.num_ack_pending or 0)
            if waiting or in_flight:
                quiet_since = now
                if now - start >= timeout:
                    raise ProjectionBusy(self.projection.name, waiting, in_flight)
            elif now - quiet_since >= quiet_for:
                return
            await asyncio.sleep(0.1)

    # --- reading ------------------------------------------------------------------------
    async def get(self, key: str) -> T | None:
        """The read model's current value for ``key`` (``None`` if absent)."""
        if self._kv is None:
            await self.start()
        entry = await self._read(key)
        return entry.stored.value if entry.stored is not None else None

    async def items(self) -> dict[str, T]:
        """The whole read model (keys with a value); empty for an empty bucket.

        One consistent snapshot of the bucket's stream (last entry per key, see
        :mod:`.snapshot`), not nats-py's ``keys()``, whose end-of-keys check races
        the deliveries of a fresh watcher.
        """
        if self._kv is None:
            await self.start()
        bucket = self.projection.bucket
        prefix = f"$KV.{bucket}."
        msgs = await read_snapshot(
            self.js, f"KV_{bucket}", prefix + ">", js_api.DeliverPolicy.LAST_PER_SUBJECT
        )
        out: dict[str, T] = {}
        for msg in msgs:
            if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
                continue
            if not msg.data:
                continue
            stored = self._decoder.decode(msg.data)
            if stored.value is not None:
                out[msg.subject[len(prefix) :]] = stored.value
        return out

    async def checkpoint(self) -> int:
        """The stream sequence of the last batch applied (0 before the first)."""
        if self._checkpoints is None:
            await self.start()
        assert self._checkpoints is not None
        try:
            entry = await self._checkpoints.get(self.projection.name)
        except KeyNotFoundError:
            return 0
        if not entry.value:
            return 0
        return msgspec.json.decode(entry.value, type=Checkpoint).applied_seq
