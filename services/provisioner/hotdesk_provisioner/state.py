"""Provisioner state in JetStream KV, shared by every replica and kept across restarts.

Bucket ``hotdesk_provisioner`` holds:

- ``nonce-key``: the key digest nonces are signed with, created once by whichever
  replica starts first, so a nonce issued by one replica is good on every other;
- ``reprovision.<desk>``: the desk's reprovision in flight (stage, attempts, deadline,
  the trace it belongs to).
  Every change is a compare-and-set on the key's revision, so when several replicas see
  the same input (a fetch, a registration, a deadline) exactly one of them moves the
  reprovision on;
- ``vendor.<desk>``: the vendor and model a desk without a configured vendor showed in
  its requests, so any replica sends it the right NOTIFY ``Event``.

Bucket ``hotdesk_nonce_counts`` holds the highest digest ``nc`` seen per nonce; its age
limit outlives every nonce.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from hotdesk_contracts.streams import KeyValueSpec

from .reprovision import Reprovision, Stage

log = logging.getLogger("hotdesk.provisioner.state")

NONCE_KEY = "nonce-key"
REPROVISION_PREFIX = "reprovision."
VENDOR_PREFIX = "vendor."
CAS_ATTEMPTS = 5
"""Compare-and-set retries before giving up on a contended key."""

_WRONG_LAST_SEQUENCE = (10071, 10164)
_KEY_SAFE = re.compile(r"[A-Za-z0-9_\-]")
_ESCAPED = re.compile(r"=([0-9A-F]{2})")


class StateError(Exception):
    """Provisioner state in KV that cannot be read or written."""


class StateConflict(StateError):
    """Another replica changed the key since it was read: read again and decide again."""


class SavedReprovision(msgspec.Struct, frozen=True, kw_only=True):
    """A reprovision in flight as stored under ``reprovision.<desk>``."""

    desk: str
    reprovision_id: str
    config_version: str
    notify_event: str
    attempt: int
    stage: str
    deadline: float | None
    failed_stage: str
    owner: str = ""
    """The replica that wrote this revision (for operators; any replica may continue)."""
    trace: str = ""
    """W3C ``traceparent`` of the reprovision's trace, so any replica's NOTIFY, fetch
    and outcome spans join it."""


class LearnedVendor(msgspec.Struct, frozen=True, kw_only=True):
    """A desk's vendor and model as its requests showed them."""

    desk: str
    vendor: str
    model: str


_reprovision_decoder = msgspec.json.Decoder(SavedReprovision)
_vendor_decoder = msgspec.json.Decoder(LearnedVendor)


def desk_key(prefix: str, desk: str) -> str:
    """A KV key for ``desk``: characters KV keys do not allow are escaped as ``=XX``."""
    escaped = "".join(
        ch if _KEY_SAFE.fullmatch(ch) else "".join(f"={b:02X}" for b in ch.encode()) for ch in desk
    )
    return prefix + escaped


def desk_of_key(prefix: str, key: str) -> str | None:
    """The desk a key of :func:`desk_key` names, ``None`` for a key of another kind."""
    if not key.startswith(prefix):
        return None
    body, raw, i = key[len(prefix) :], bytearray(), 0
    while i < len(body):
        if _ESCAPED.match(body, i):
            raw += bytes.fromhex(body[i + 1 : i + 3])
            i += 3
        else:
            raw += body[i].encode()
            i += 1
    return raw.decode(errors="replace")


def encode_reprovision(reprovision: Reprovision, owner: str) -> bytes:
    """The stored form of ``reprovision``."""
    return msgspec.json.encode(
        SavedReprovision(
            desk=reprovision.desk,
            reprovision_id=reprovision.reprovision_id,
            config_version=reprovision.config_version,
            notify_event=reprovision.notify_event,
            attempt=reprovision.attempt,
            stage=reprovision.stage.value,
            deadline=reprovision.deadline,
            failed_stage=reprovision.failed_stage.value,
            owner=owner,
            trace=reprovision.trace,
        )
    )


def decode_reprovision(data: bytes) -> Reprovision:
    """A stored reprovision, as the tracker works on it."""
    try:
        saved = _reprovision_decoder.decode(data)
        return Reprovision(
            desk=saved.desk,
            reprovision_id=saved.reprovision_id,
            config_version=saved.config_version,
            notify_event=saved.notify_event,
            attempt=saved.attempt,
            stage=Stage(saved.stage),
            deadline=saved.deadline,
            failed_stage=Stage(saved.failed_stage),
            trace=saved.trace,
        )
    except (msgspec.DecodeError, ValueError) as exc:
        raise StateError(f"stored reprovision cannot be read: {exc}") from exc


async def open_bucket(js: JetStreamContext, spec: KeyValueSpec) -> KeyValue:
    """The bucket of ``spec``, created when this replica is the first to need it."""
    try:
        return await js.key_value(spec.bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    with contextlib.suppress(BadRequestError):
        # Another replica may create it at the same moment with the same config.
        await js.create_key_value(
            KeyValueConfig(
                bucket=spec.bucket,
                description=spec.description,
                history=spec.history,
                ttl=spec.ttl_seconds or None,
            )
        )
    return await js.key_value(spec.bucket)


async def shared_nonce_key(kv: KeyValue) -> bytes:
    """The nonce key every replica uses: created at random once, then read."""
    for _ in range(CAS_ATTEMPTS):
        # Another replica may have been first: then its key is the one to use.
        with contextlib.suppress(KeyWrongLastSequenceError):
            await kv.create(NONCE_KEY, secrets.token_bytes(32))
        try:
            entry = await kv.get(NONCE_KEY)
        except (KeyNotFoundError, KeyDeletedError):
            continue
        if entry.value and len(entry.value) >= 16:
            return entry.value
        raise StateError(f"stored {NONCE_KEY!r} is shorter than 16 bytes")
    raise StateError(f"{NONCE_KEY!r} could not be created or read")


def _is_conflict(exc: BadRequestError) -> bool:
    return isinstance(exc, KeyWrongLastSequenceError) or exc.err_code in _WRONG_LAST_SEQUENCE


class ReprovisionStore:
    """Reprovisions in flight and learned vendors in the ``hotdesk_provisioner`` bucket."""

    def __init__(self, kv: KeyValue, owner: str) -> None:
        self.kv = kv
        self.owner = owner

    async def load(self, desk: str) -> tuple[Reprovision | None, int]:
        """The desk's reprovision and the key's revision (0: never written)."""
        try:
            entry = await self.kv.get(desk_key(REPROVISION_PREFIX, desk))
        except KeyDeletedError as exc:
            return None, exc.entry.revision if exc.entry and exc.entry.revision else 0
        except KeyNotFoundError:
            return None, 0
        if not entry.value:
            return None, entry.revision or 0
        return decode_reprovision(entry.value), entry.revision or 0

    async def save(self, reprovision: Reprovision, last: int | None) -> int:
        """Write ``reprovision``; with ``last``, only over that revision (else
        :class:`StateConflict`). Returns the new revision."""
        key = desk_key(REPROVISION_PREFIX, reprovision.desk)
        value = encode_reprovision(reprovision, self.owner)
        try:
            if last is None:
                return await self.kv.put(key, value)
            return await self.kv.update(key, value, last=last)
        except BadRequestError as exc:
            if _is_conflict(exc):
                raise StateConflict(f"{key} changed since revision {last}") from exc
            raise

    async def remove(self, desk: str, last: int) -> None:
        """Forget the desk's reprovision, only over revision ``last``."""
        key = desk_key(REPROVISION_PREFIX, desk)
        try:
            await self.kv.delete(key, last=last)
        except BadRequestError as exc:
            if _is_conflict(exc):
                raise StateConflict(f"{key} changed since revision {last}") from exc
            raise

    async def learn_vendor(self, desk: str, vendor: str, model: str) -> None:
        """Remember what the desk's requests showed, for every replica."""
        value = msgspec.json.encode(LearnedVendor(desk=desk, vendor=vendor, model=model))
        await self.kv.put(desk_key(VENDOR_PREFIX, desk), value)


ReprovisionListener = Callable[[str, int, Reprovision | None], None]
"""(desk, revision, reprovision or ``None`` when it ended)."""
VendorListener = Callable[[str, str, str], None]
"""(desk, vendor, model)."""


@dataclass
class StateFollower:
    """Follows the ``hotdesk_provisioner`` bucket: every replica's view of the
    reprovisions in flight (for their deadlines) and of the learned vendors."""

    kv: KeyValue
    on_reprovision: ReprovisionListener
    on_vendor: VendorListener
    _task: asyncio.Task[None] | None = None
    _watcher: KeyValue.KeyWatcher | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Apply every stored value, then keep following in the background."""
        self._watcher = await self.kv.watchall()
        caught_up = asyncio.Event()
        self._task = asyncio.create_task(self._follow(self._watcher, caught_up))
        try:
            await asyncio.wait_for(caught_up.wait(), timeout)
        except TimeoutError as exc:
            await self.stop()
            raise StateError(f"provisioner state not read within {timeout}s") from exc

    async def stop(self) -> None:
        """Stop following."""
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()  # type: ignore[no-untyped-call]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, watcher: KeyValue.KeyWatcher, caught_up: asyncio.Event) -> None:
        async for entry in watcher:
            if entry is None:  # The watcher's marker: every stored value was delivered.
                caught_up.set()
                continue
            try:
                self._apply(entry)
            except Exception:
                log.exception("provisioner state entry not applied", extra={"key": entry.key})
            if entry.delta == 0:
                caught_up.set()

    def _apply(self, entry: KeyValue.Entry) -> None:
        deleted = entry.operation in ("DEL", "PURGE") or not entry.value
        revision = entry.revision or 0
        desk = desk_of_key(REPROVISION_PREFIX, entry.key)
        if desk is not None:
            if deleted or entry.value is None:
                self.on_reprovision(desk, revision, None)
            else:
                self.on_reprovision(desk, revision, decode_reprovision(entry.value))
            return
        if desk_of_key(VENDOR_PREFIX, entry.key) is not None and not deleted:
            assert entry.value is not None
            learned = _vendor_decoder.decode(entry.value)
            self.on_vendor(learned.desk, learned.vendor, learned.model)


class SharedNonceCounts:
    """Nonce counts in the ``hotdesk_nonce_counts`` bucket: a replayed ``nc`` is refused
    whichever replica it reaches. Each nonce's count moves by compare-and-set."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def admit(self, nonce: str, nc: int, now: float) -> bool:
        """Record ``nc`` for ``nonce``; ``False`` when it is not above the last one seen."""
        # A hash: nonces are base64, whose '+' a KV key may not hold.
        key = "n." + hashlib.sha256(nonce.encode()).hexdigest()[:40]
        value = str(nc).encode()
        for _ in range(CAS_ATTEMPTS):
            try:
                entry = await self.kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):
                try:
                    await self.kv.create(key, value)
                    return True
                except KeyWrongLastSequenceError:
                    continue
            try:
                last = int(entry.value or b"0")
            except ValueError:
                last = 0
            if nc <= last:
                return False
            try:
                await self.kv.update(key, value, last=entry.revision)
                return True
            except KeyWrongLastSequenceError:
                continue
        # Contended beyond reason: refusing costs the phone one more challenge.
        return False
