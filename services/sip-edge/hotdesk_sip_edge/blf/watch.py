"""The BLF read model (KV bucket ``hotdesk_blf``) as dialog-package NOTIFYs.

Presence keeps one key per extension: the extension's dialogs with call-id, tags,
direction and the other party, under the projection's ``{"applied": …, "value": …}``
envelope. This module reads that shape itself (services share only ``contracts``) and
turns every change into :meth:`Subscriptions.state_changed`; :func:`read_model_dialogs`
is the pure half, :class:`BlfWatch` the NATS half.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from hotdesk_contracts import streams

from .dialog_info import Dialog, DialogInfoError, Participant
from .subscriptions import NotifyToSend, Subscriptions

log = logging.getLogger(__name__)

FANOUT_CHUNK = 32
"""NOTIFYs sent per turn of the event loop during a fan-out while their answers might
not fit the socket unread. A turn reads at most 32 datagrams (uvloop, like libuv), so
the phones' 200 OKs are read as fast as the NOTIFYs go out; an overflowing receive
buffer would cost a retransmission per lost answer."""

FANOUT_CHUNK_AHEAD = 96
"""NOTIFYs sent per turn of the event loop while the socket has room for their answers:
the NOTIFYs then go out ahead of the 200 OKs (reading one costs as much as sending
one), which are read as soon as the fan-out is done. About 2-3 ms of sending, as long
as RTP pacing and other phones' requests wait for a turn."""

SendNotify = Callable[[NotifyToSend], Awaitable[None]]
"""Sends one NOTIFY (the SIP layer's job); may raise, the watch carries on."""

Room = Callable[[], bool]
"""Whether the answers to more NOTIFYs would still fit the receive buffer unread."""

_KV_DELETES = ("DEL", "PURGE")


class BlfValueError(ValueError):
    """A BLF read-model value this edge does not understand."""


class _ReadDialog(msgspec.Struct, frozen=True):
    call_id: str
    state: Literal["trying", "proceeding", "early", "confirmed", "terminated"]
    direction: Literal["initiator", "recipient", ""] = ""
    local_tag: str = ""
    remote_tag: str = ""
    remote: str = ""


class _ReadState(msgspec.Struct, frozen=True):
    ext: str
    version: int = 0
    state: Literal["idle", "trying", "proceeding", "early", "confirmed", "terminated"] = "idle"
    call_id: str = ""
    direction: Literal["initiator", "recipient", ""] = ""
    local_tag: str = ""
    remote_tag: str = ""
    remote: str = ""
    active: list[_ReadDialog] = []


class _Stored(msgspec.Struct, frozen=True):
    value: _ReadState | None = None


_decoder = msgspec.json.Decoder(_Stored)


def dialog_id(call_id: str, local_tag: str) -> str:
    """A stable ``<dialog id>`` for one side of a call (RFC 4235 section 4.1.1: unique
    per dialog, the same in every NOTIFY about it)."""
    return hashlib.sha256(f"{call_id};{local_tag}".encode()).hexdigest()[:16]


def _dialog(ext: str, d: _ReadDialog, domain: str) -> Dialog:
    return Dialog(
        id=dialog_id(d.call_id, d.local_tag),
        state=d.state,
        call_id=d.call_id,
        local_tag=d.local_tag,
        remote_tag=d.remote_tag,
        direction=d.direction or None,
        # Targets as well as identities: Polycom picks up from the BLF key only when
        # the NOTIFY names the remote target (the same shape Yealink notifiers send).
        local=_party(ext, domain),
        remote=_party(d.remote, domain) if d.remote else None,
    )


def _party(user: str, domain: str) -> Participant:
    uri = f"sip:{user}@{domain}"
    return Participant(identity=uri, target=uri)


def read_model_dialogs(data: bytes, domain: str) -> list[Dialog]:
    """The dialogs to show for a BLF read-model value (all of them: a full state).

    The active dialogs when there are any; else the call that just ended, as a
    terminated dialog, so the phone sees that very call end; else none (idle).
    """
    try:
        stored = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise BlfValueError(f"BLF value not understood: {exc}") from exc
    value = stored.value
    if value is None:
        return []
    if value.active:
        return [_dialog(value.ext, d, domain) for d in value.active]
    if value.state == "idle" or not value.call_id:
        return []
    last = _ReadDialog(
        call_id=value.call_id,
        state="terminated",
        direction=value.direction,
        local_tag=value.local_tag,
        remote_tag=value.remote_tag,
        remote=value.remote,
    )
    return [_dialog(value.ext, last, domain)]


class BlfWatch:
    """Watches the BLF bucket and sends the NOTIFYs each change calls for.

    The current value of every key arrives first, so subscriptions made after a
    restart still get the right state; then every change, in bucket order.

    A change's NOTIFYs go out :data:`FANOUT_CHUNK` per turn of the event loop, or
    :data:`FANOUT_CHUNK_AHEAD` while ``room`` says their answers fit the socket unread.
    """

    def __init__(
        self,
        js: JetStreamContext,
        subscriptions: Subscriptions,
        send: SendNotify,
        *,
        domain: str,
        clock: Callable[[], float] = time.monotonic,
        bucket: str = streams.BLF.bucket,
        poll: float = 1.0,
        room: Room = lambda: False,
    ) -> None:
        self._js = js
        self._subscriptions = subscriptions
        self._send = send
        self._room = room
        self._domain = domain
        self._clock = clock
        self._bucket = bucket
        self._poll = poll
        self.ready = asyncio.Event()
        """Set once the current values have all been applied."""

    async def run(self, stopping: asyncio.Event) -> None:
        """Apply bucket changes until ``stopping`` is set."""
        kv = await self._js.key_value(self._bucket)
        watcher = await kv.watchall()
        try:
            while not stopping.is_set():
                try:
                    entry = await watcher.updates(timeout=self._poll)  # type: ignore[no-untyped-call]
                except TimeoutError:
                    continue
                if entry is None:
                    self.ready.set()  # the end of the current values
                    continue
                await self.apply(entry)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def apply(self, entry: KeyValue.Entry) -> list[NotifyToSend]:
        """Apply one bucket entry and send its NOTIFYs; returns them."""
        ext = entry.key
        try:
            if entry.operation in _KV_DELETES or not entry.value:
                dialogs: list[Dialog] = []  # a rebuilt read model starts from idle
            else:
                dialogs = read_model_dialogs(entry.value, self._domain)
            notifies = self._subscriptions.state_changed(ext, dialogs, self._clock())
        except (BlfValueError, DialogInfoError) as exc:
            log.error(
                "BLF value skipped",
                extra={"ext": ext, "revision": entry.revision, "error": str(exc)},
            )
            return []
        since_yield = 0
        for notify in notifies:
            await self._deliver(notify)
            since_yield += 1
            if since_yield >= FANOUT_CHUNK_AHEAD or (
                since_yield >= FANOUT_CHUNK and not self._room()
            ):
                await asyncio.sleep(0)
                since_yield = 0
        return notifies

    async def _deliver(self, notify: NotifyToSend) -> None:
        try:
            await self._send(notify)
        except Exception:
            # One unreachable phone must not stop the lamps of all the others.
            log.exception(
                "BLF NOTIFY not sent",
                extra={
                    "ext": notify.subscription.extension,
                    "call_id": notify.subscription.key.call_id,
                    "version": notify.version,
                },
            )


async def expire_subscriptions(
    subscriptions: Subscriptions,
    send: SendNotify,
    stopping: asyncio.Event,
    *,
    every: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """End timed-out subscriptions with their final NOTIFY, every ``every`` seconds,
    until ``stopping`` is set."""
    while not stopping.is_set():
        for notify in subscriptions.expire(clock()):
            try:
                await send(notify)
            except Exception:
                log.exception(
                    "final BLF NOTIFY not sent",
                    extra={"call_id": notify.subscription.key.call_id},
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every)
