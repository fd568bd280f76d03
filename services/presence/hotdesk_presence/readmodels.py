"""Reading the presence read models from their KV buckets (an adapter)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from hotdesk_contracts import streams

from .projections import (
    DESK_STATUS_BUCKET,
    BlfState,
    BusStored,
    DeskSeat,
    DeskStatus,
    HistoryLog,
    UserRecord,
)

T = TypeVar("T")


class _LedgerStored(msgspec.Struct):
    applied_seq: int
    value: Any = None


async def open_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """The bucket, created (history 1) when it does not exist yet."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(js_api.KeyValueConfig(bucket=bucket, history=1))


async def bucket_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """The keys of ``bucket`` (deleted ones included: their values read as none).

    Read from the stream's per-subject state, so no consumer is made:
    ``KeyValue.keys()`` leaves an ephemeral consumer on the server for every call, and
    under a few calls a second it was seen to answer that a bucket holding keys had
    none, which showed every desk idle and offline. The server lists up to 100,000
    subjects in one answer, far more desks or extensions than a site has.
    """
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=prefix + ">")
    return [subject[len(prefix) :] for subject in info.state.subjects or {}]


class ReadModels:
    """The desks, desk status, users, history and BLF buckets, decoded."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._buckets: dict[str, KeyValue] = {}

    async def bucket(self, name: str) -> KeyValue:
        """An open bucket, cached."""
        if name not in self._buckets:
            self._buckets[name] = await open_bucket(self.js, name)
        return self._buckets[name]

    async def _all(self, bucket: str, value_type: type[T], bus: bool) -> dict[str, T]:
        kv = await self.bucket(bucket)
        keys = await bucket_keys(self.js, bucket)
        values = await asyncio.gather(*(self._get(kv, k, value_type, bus) for k in keys))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    async def _get(self, kv: KeyValue, key: str, value_type: type[T], bus: bool) -> T | None:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        if bus:
            stored: BusStored[T] = msgspec.json.decode(entry.value, type=BusStored[value_type])  # type: ignore[valid-type]
            return stored.value
        raw = msgspec.json.decode(entry.value, type=_LedgerStored)
        return None if raw.value is None else msgspec.convert(raw.value, value_type)

    async def seats(self) -> dict[str, DeskSeat]:
        """Desk name -> seat."""
        return await self._all(streams.DESKS.bucket, DeskSeat, bus=False)

    async def seat(self, desk: str) -> DeskSeat | None:
        """One desk's seat."""
        return await self._get(await self.bucket(streams.DESKS.bucket), desk, DeskSeat, False)

    async def statuses(self) -> dict[str, DeskStatus]:
        """Desk name -> phone status."""
        return await self._all(DESK_STATUS_BUCKET, DeskStatus, bus=True)

    async def status(self, desk: str) -> DeskStatus | None:
        """One desk's phone status."""
        return await self._get(await self.bucket(DESK_STATUS_BUCKET), desk, DeskStatus, True)

    async def users(self) -> dict[str, UserRecord]:
        """Extension -> user record."""
        return await self._all(streams.USERS.bucket, UserRecord, bus=False)

    async def history(self, key: str) -> HistoryLog:
        """A desk's (``desk.<desk>``) or user's (``user.<ext>``) history."""
        kv = await self.bucket(streams.HISTORY.bucket)
        return await self._get(kv, key, HistoryLog, False) or HistoryLog()

    async def blf(self, ext: str) -> BlfState | None:
        """An extension's lamp."""
        return await self._get(await self.bucket(streams.BLF.bucket), ext, BlfState, True)
