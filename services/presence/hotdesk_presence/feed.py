"""Live desk changes for the console's Server-Sent Events stream.

:class:`DeskFeed` fans one change out to every open stream (bounded queues: a stalled
browser loses updates rather than memory, and reloads the list when it reconnects).
:func:`watch_desks` is the adapter that turns KV updates of the desks and desk status
buckets into desk rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from nats.errors import TimeoutError as NatsTimeout
from nats.js.kv import KeyValue

from hotdesk_contracts import streams
from hotdesk_contracts.directory import Directory

from .projections import DESK_STATUS_BUCKET
from .readmodels import ReadModels
from .views import DeskView, desk_view

log = logging.getLogger(__name__)


class DeskFeed:
    """Publish/subscribe of desk rows within one process."""

    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._queues: set[asyncio.Queue[DeskView]] = set()

    def publish(self, view: DeskView) -> None:
        """Hand ``view`` to every subscriber (dropped for one whose queue is full)."""
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(view)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[DeskView]]:
        """A queue of desk rows for as long as the context is open."""
        queue: asyncio.Queue[DeskView] = asyncio.Queue(self.queue_size)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    @property
    def subscribers(self) -> int:
        """Open streams."""
        return len(self._queues)


async def watch_desks(
    read: ReadModels,
    directory: Callable[[], Directory],
    feed: DeskFeed,
    stopping: asyncio.Event,
) -> None:
    """Publish a desk's row whenever its seat or status changes, until ``stopping``."""
    watchers = []
    for bucket in (streams.DESKS.bucket, DESK_STATUS_BUCKET):
        kv: KeyValue = await read.bucket(bucket)
        watchers.append(await kv.watchall(include_history=False))

    async def follow(watcher: KeyValue.KeyWatcher) -> None:
        while not stopping.is_set():
            try:
                entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
            except (TimeoutError, NatsTimeout):
                continue
            if entry is None or not entry.key:
                continue
            seat = await read.seat(entry.key)
            status = await read.status(entry.key)
            view = desk_view(
                directory(),
                entry.key,
                {entry.key: seat} if seat else {},
                {entry.key: status} if status else {},
            )
            if view is not None:
                feed.publish(view)

    try:
        await asyncio.gather(*(follow(w) for w in watchers))
    finally:
        for watcher in watchers:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
