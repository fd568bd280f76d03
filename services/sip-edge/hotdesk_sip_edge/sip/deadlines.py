"""Which transactions have a timer due, without looking at every transaction.

A BLF fan-out leaves the edge holding a client transaction per NOTIFY, each kept for
Timer K after its answer (RFC 3261 §17.1.2.2): with a thousand watchers of a busy
extension that is tens of thousands at once, and scanning them all on every timer tick
cost more than the fan-outs themselves. :class:`Deadlines` is a heap of when each key
is next due, so a tick only touches the keys whose time has come.

Pure: the caller passes the times and asks again after a transaction changed.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

K = TypeVar("K", str, tuple[str, str, str])
"""A client transaction's branch or a server transaction's key."""


class Deadlines(Generic[K]):
    """Keys (transaction branches, server transaction keys) by the time they are next
    due.

    :meth:`schedule` only ever brings a key's time forward; a key whose transaction
    moved its deadline later is simply returned early by :meth:`due` and scheduled
    again by the caller, which costs one heap entry instead of a search.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, K]] = []
        self._at: dict[K, float] = {}

    def schedule(self, key: K, at: float | None) -> None:
        """Make ``key`` due at ``at``, unless it already is at that time or earlier
        (None: nothing to schedule)."""
        if at is None:
            return
        current = self._at.get(key)
        if current is not None and current <= at:
            return
        self._at[key] = at
        heapq.heappush(self._heap, (at, key))

    def due(self, now: float) -> list[K]:
        """The keys due at ``now``, earliest first; they are no longer scheduled."""
        out: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            if self._at.get(key) == at:  # else superseded by an earlier time
                del self._at[key]
                out.append(key)
        return out

    def __len__(self) -> int:
        """How many keys are scheduled."""
        return len(self._at)
