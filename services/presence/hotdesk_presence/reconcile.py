"""Desk online state checked against the registrations bucket, so it cannot get stuck.

Only the edge that stored a binding announces its expiry, from its own memory. When that
edge dies or restarts, no ``expired`` event comes and the desk-status read model would
show the desk online for ever. :class:`RegistrationReconciler` looks, every ``every``
seconds, at each desk the read model believes online and marks it offline when the
``hotdesk_registrations`` bucket holds no live binding for it any more: the key is gone
(its per-message TTL ran out) or every binding's ``expires_at`` has passed (servers
without per-message TTLs keep the key; the edges filter on ``expires_at`` too).

Every presence replica may run it. The desk's status is read before its bindings and
written back as a compare-and-set on that revision: a registration the bus fold applied
in between makes the write fail and the desk is looked at again, and a desk already
marked offline (by another replica or by a late event) is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hotdesk_contracts import streams

from .projections import DESK_STATUS_BUCKET, BusStored, DeskStatus
from .readmodels import bucket_keys, open_bucket

log = logging.getLogger(__name__)

DEFAULT_EVERY = 30.0
"""Seconds between two checks: how long a desk may show online after its last binding
lapsed when no ``expired`` event came."""

DEFAULT_GRACE = 2.0
"""Seconds a binding counts as live after its ``expires_at`` (clocks of the edge and of
presence may differ a little; the edge keeps the key one second past the expiry)."""


class _Expiry(msgspec.Struct):
    """The one field of the edge's binding records read here."""

    expires_at: float


_BINDINGS = msgspec.json.Decoder(list[_Expiry])
_STATUS = msgspec.json.Decoder(BusStored[DeskStatus])


def registration_key(desk: str) -> str:
    """The desk's key in the registrations bucket: the AOR's user part as it is (desk
    names, ``HD`` and digits, are valid KV keys, which the edge's ``aor_key`` keeps)."""
    return desk


class RegistrationReconciler:
    """Marks offline the desks shown online that have no live binding left."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        grace: float = DEFAULT_GRACE,
        clock: Callable[[], float] = time.time,
        status_bucket: str = DESK_STATUS_BUCKET,
        registrations_bucket: str = streams.REGISTRATIONS.bucket,
        max_attempts: int = 5,
    ) -> None:
        self.js = js
        self.grace = grace
        self.clock = clock
        self.status_bucket = status_bucket
        self.registrations_bucket = registrations_bucket
        self.max_attempts = max_attempts
        self._status: KeyValue | None = None
        self._registrations: KeyValue | None = None

    async def _buckets(self) -> tuple[KeyValue, KeyValue]:
        if self._status is None:
            self._status = await open_bucket(self.js, self.status_bucket)
        if self._registrations is None:
            self._registrations = await self.js.key_value(self.registrations_bucket)
        return self._status, self._registrations

    async def live_bindings(self, desk: str) -> int:
        """How many of the desk's bindings are live now (0 when the key is gone)."""
        _, registrations = await self._buckets()
        try:
            entry = await registrations.get(registration_key(desk))
        except KeyNotFoundError:
            return 0
        if not entry.value:
            return 0  # a delete or a purge marker, or the empty list of an unregister
        try:
            bindings = _BINDINGS.decode(entry.value)
        except msgspec.DecodeError:
            # The edge reads such a value as no bindings: the desk cannot be reached.
            log.warning("registration record not understood", extra={"desk": desk})
            return 0
        now = self.clock()
        return sum(1 for b in bindings if b.expires_at + self.grace > now)

    async def check(self, desk: str) -> bool:
        """Mark ``desk`` offline if it is shown online without a live binding; whether
        this call changed it."""
        status_kv, _ = await self._buckets()
        for _ in range(self.max_attempts):
            try:
                entry = await status_kv.get(desk)
            except KeyNotFoundError:
                return False
            if not entry.value:
                return False
            stored = _STATUS.decode(entry.value)
            if stored.value is None or not stored.value.online:
                return False
            # The bindings are read after the status: a registration stored since then
            # is either seen here or its event changes the status revision first.
            if await self.live_bindings(desk):
                return False
            offline = msgspec.structs.replace(stored.value, online=False, online_since=None)
            data = msgspec.json.encode(BusStored(applied=stored.applied, value=offline))
            try:
                await status_kv.update(desk, data, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # the bus fold (or another replica) wrote first: look again
            log.info("desk offline: no live registration left", extra={"desk": desk})
            return True
        return False

    async def online_desks(self) -> list[str]:
        """The desks the desk-status read model shows online."""
        status_kv, _ = await self._buckets()

        async def online(desk: str) -> bool:
            try:
                entry = await status_kv.get(desk)
            except KeyNotFoundError:
                return False
            if not entry.value:
                return False
            stored = _STATUS.decode(entry.value)
            return stored.value is not None and stored.value.online

        desks = await bucket_keys(self.js, self.status_bucket)
        flags = await asyncio.gather(*(online(d) for d in desks))
        return [d for d, up in zip(desks, flags, strict=True) if up]

    async def tick(self) -> list[str]:
        """Check every desk shown online; the desks marked offline, sorted."""
        desks = await self.online_desks()
        changed = await self._check_all(desks)
        return sorted(changed)

    async def _check_all(self, desks: Sequence[str], width: int = 32) -> list[str]:
        changed: list[str] = []
        for start in range(0, len(desks), width):
            batch = desks[start : start + width]
            results = await asyncio.gather(*(self.check(d) for d in batch))
            changed += [d for d, done in zip(batch, results, strict=True) if done]
        return changed

    async def run(self, stopping: asyncio.Event, every: float = DEFAULT_EVERY) -> None:
        """Check every ``every`` seconds until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception as exc:
                # NATS away or a bucket not there yet: the next tick tries again.
                log.warning("registration reconciliation failed", extra={"error": repr(exc)})
                self._status = self._registrations = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
