"""The location service: address-of-record → contact bindings (RFC 3261 §10.3).

Bindings are stored in the ``hotdesk_registrations`` KV bucket, one key per AOR, each
write with a per-message TTL equal to the longest binding's expiry (ADR-43) so a dead
registration disappears from every edge replica by itself. Each binding also carries its
absolute expiry and readers filter on it, so a server without per-message TTLs still
routes correctly.
"""

from __future__ import annotations

import binascii
import re
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, BucketNotFoundError, KeyNotFoundError, NotFoundError
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


def aor_key(aor: str) -> str:
    """The KV key of an AOR user part (hex-encoded when it has other characters)."""
    if _KEY_RE.match(aor):
        return aor
    return "x_" + binascii.hexlify(aor.encode()).decode()


class KvLocationStore:
    """:class:`LocationStore` on the REGISTRATIONS KV bucket."""

    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self._js = js
        self._kv = kv
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
        return cls(js, kv)

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
        data = msgspec.json.encode(bindings)
        try:
            ack = await self._js.publish(
                subject,
                data,
                headers=headers,
                msg_ttl=max(1.0, ttl) if self._ttl_ok else None,
            )
            self._written[aor] = (list(bindings), ack.seq)
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
