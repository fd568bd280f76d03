"""The location service: address-of-record → contact bindings (RFC 3261 §10.3).

Bindings are stored in the ``hotdesk_registrations`` KV bucket, one key per AOR, each
write with a per-message TTL equal to the longest binding's expiry (ADR-43) so a dead
registration disappears from every edge replica by itself. Each binding also carries its
absolute expiry and readers filter on it, so a server without per-message TTLs still
routes correctly.
"""

from __future__ import annotations

import asyncio
import binascii
import re
from typing import Any, Protocol

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    NoStreamResponseError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from hotdesk_contracts import streams


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """One registered contact of an AOR."""

    contact: str
    """The contact as the phone sent it, ``<uri>;params`` without ``expires``."""
    uri: str
    """The bare contact URI requests are sent to."""
    expires_at: float
    """Seconds since the epoch."""
    call_id: str
    cseq: int
    path: list[str] = []
    """Path entries (RFC 3327), to be used as a pre-loaded Route set."""
    instance: str = ""
    reg_id: str = ""
    transport: str = "UDP"
    source_host: str = ""
    source_port: int = 0
    """Where the REGISTER really came from (for phones behind NAT, RFC 3581)."""
    behind_nat: bool = False
    """The REGISTER's Via named another address than its source: requests to this
    binding go to the source address, where the NAT binding is (as Kamailio's
    ``fix_nated_register`` does)."""
    user_agent: str = ""
    edge: str = ""


def live(bindings: list[Binding], now: float) -> list[Binding]:
    """The bindings not yet expired at ``now``."""
    return [b for b in bindings if b.expires_at > now]


class LocationStore(Protocol):
    """Where bindings live."""

    async def load(self, aor: str) -> tuple[list[Binding], int]:
        """Bindings of ``aor`` and the revision they were read at (0: none)."""
        ...

    async def save(self, aor: str, bindings: list[Binding], revision: int, ttl: float) -> None:
        """Replace the bindings of ``aor`` if still at ``revision``
        (raises :class:`ConcurrentUpdate` otherwise)."""
        ...


class ConcurrentUpdate(Exception):
    """Another edge replica changed the AOR's bindings first; reload and retry."""


_KEY_RE = re.compile(r"^[A-Za-z0-9_\-=]+$")
_BINDINGS = msgspec.json.Decoder(list[Binding])
_ENCODE = msgspec.json.Encoder().encode


def aor_key(aor: str) -> str:
    """The KV key of an AOR user part (hex-encoded when it has other characters)."""
    if _KEY_RE.match(aor):
        return aor
    return "x_" + binascii.hexlify(aor.encode()).decode()


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish: the stored sequence, or an API error."""

    seq: int = 0
    error: dict[str, Any] | None = None


_PUB_ACK = msgspec.json.Decoder(_PubAck)


class AckedPublisher:
    """JetStream publishes whose acks all come back to one wildcard inbox subscription.

    ``JetStreamContext.publish`` makes each publish a request of its own (a timer, a
    JSON decode and a dataclass per ack): on the REGISTER path that cost about as much
    CPU as the digest check. Here many publishes are in flight at once, each waiting
    for its own ack, and one timer a second fails those whose ack did not come within
    ``timeout`` with the error ``JetStreamContext.publish`` raises.
    """

    def __init__(self, nc: Client, timeout: float = 5.0) -> None:
        self._nc = nc
        self._timeout = timeout
        self._prefix = ""
        self._waiting: dict[str, tuple[asyncio.Future[int], float]] = {}
        """Reply token -> the ack's future and its deadline, oldest first."""
        self._sent = 0
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Subscribe to the inbox the acks come to."""
        self._prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._prefix + "*", cb=self._on_ack)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        """Publish and wait for the ack: the stream sequence of the message.

        Raises :class:`APIError` (a failed expected-sequence check is err_code
        10071), :class:`NoStreamResponseError` or a NATS timeout.
        """
        if not self._prefix:
            await self.start()
        loop = asyncio.get_running_loop()
        self._sent += 1
        token = format(self._sent, "x")
        future: asyncio.Future[int] = loop.create_future()
        self._waiting[token] = (future, loop.time() + self._timeout)
        if self._sweeper is None:
            self._sweeper = loop.call_later(1.0, self._sweep)
        try:
            await self._nc.publish(subject, data, reply=self._prefix + token, headers=headers)
            return await future
        finally:
            self._waiting.pop(token, None)

    async def _on_ack(self, msg: Msg) -> None:
        entry = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if entry is None or entry[0].done():
            return
        future = entry[0]
        if msg.headers and msg.headers.get(Header.STATUS) == "503":
            future.set_exception(NoStreamResponseError())  # no stream takes the subject
            return
        try:
            ack = _PUB_ACK.decode(msg.data)
        except msgspec.DecodeError:
            future.set_exception(APIError(description="malformed JetStream ack"))
            return
        if ack.error is not None:
            future.set_exception(
                APIError(
                    code=ack.error.get("code"),
                    err_code=ack.error.get("err_code"),
                    description=ack.error.get("description"),
                )
            )
            return
        future.set_result(ack.seq)

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        expired: list[str] = []
        for token, (_, deadline) in self._waiting.items():
            if deadline > now:
                break  # the rest were sent later
            expired.append(token)
        for token in expired:
            future, _ = self._waiting.pop(token)
            if not future.done():
                future.set_exception(NatsTimeoutError())
        self._sweeper = (
            asyncio.get_running_loop().call_later(1.0, self._sweep) if self._waiting else None
        )


class KvLocationStore:
    """:class:`LocationStore` on the REGISTRATIONS KV bucket."""

    def __init__(self, js: JetStreamContext, kv: KeyValue, nc: Client | None = None) -> None:
        self._js = js
        self._kv = kv
        self._publisher = AckedPublisher(nc if nc is not None else js._nc)
        self._ttl_ok = True
        self._written: dict[str, tuple[list[Binding], int]] = {}
        """AOR -> the bindings this process last stored and their revision."""

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvLocationStore:
        """Open the bucket (created by the runtime's JetStream setup)."""
        try:
            kv = await js.key_value(streams.REGISTRATIONS.bucket)
        except (BucketNotFoundError, NotFoundError):
            kv = await js.create_key_value(
                bucket=streams.REGISTRATIONS.bucket,
                description=streams.REGISTRATIONS.description,
                ttl=streams.REGISTRATIONS.ttl_seconds,
            )
        store = cls(js, kv)
        await store._publisher.start()
        return store

    async def load(self, aor: str) -> tuple[list[Binding], int]:
        try:
            entry = await self._kv.get(aor_key(aor))
        except KeyNotFoundError:
            return [], 0
        if entry.value is None or not entry.value:
            return [], entry.revision or 0
        try:
            return _BINDINGS.decode(entry.value), entry.revision or 0
        except msgspec.DecodeError:
            return [], entry.revision or 0

    async def load_for_update(self, aor: str) -> tuple[list[Binding], int]:
        """:meth:`load` for a read-modify-write: what this process stored last, without
        a round trip. Safe because :meth:`save` states the revision it expects: when
        another replica (or an expiry) changed the key since, the save raises
        :class:`ConcurrentUpdate`, the entry is forgotten and the retry reads the KV."""
        known = self._written.get(aor)
        if known is not None:
            return list(known[0]), known[1]
        return await self.load(aor)

    async def save(self, aor: str, bindings: list[Binding], revision: int, ttl: float) -> None:
        try:
            await self._save(aor, bindings, revision, ttl)
        except BaseException:
            self._written.pop(aor, None)
            raise

    async def _save(self, aor: str, bindings: list[Binding], revision: int, ttl: float) -> None:
        # KV keys are the subjects $KV.<bucket>.<key> (ADR-8); publishing there directly
        # is how a per-message TTL and the expected revision go together.
        subject = f"$KV.{streams.REGISTRATIONS.bucket}.{aor_key(aor)}"
        headers = {"Nats-Expected-Last-Subject-Sequence": str(revision)}
        if self._ttl_ok:
            # Whole seconds, as JetStreamContext.publish(msg_ttl=) writes it.
            headers[Header.MSG_TTL] = str(int(max(1.0, ttl)))
        data = _ENCODE(bindings)
        try:
            seq = await self._publisher.publish(subject, data, headers)
            self._written[aor] = (list(bindings), seq)
        except APIError as exc:
            if exc.err_code in (10071, 10164):
                raise ConcurrentUpdate(aor) from exc
            if self._ttl_ok:
                # The bucket does not allow per-message TTLs: expiries are filtered instead.
                self._ttl_ok = False
                await self._save(aor, bindings, revision, ttl)
                return
            raise


class MemoryLocationStore:
    """:class:`LocationStore` in a dict (for pure tests and single-process tools)."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[list[Binding], int]] = {}

    async def load(self, aor: str) -> tuple[list[Binding], int]:
        return self.data.get(aor, ([], 0))

    async def save(self, aor: str, bindings: list[Binding], revision: int, ttl: float) -> None:
        if self.data.get(aor, ([], 0))[1] != revision:
            raise ConcurrentUpdate(aor)
        self.data[aor] = (bindings, revision + 1)
