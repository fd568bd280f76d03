"""A desk's or user's whole history, page by page, newest first.

The ``presence-history`` read model keeps only the newest entries of each key (its cap):
that is the fast first page. Older pages are read from the ledger stream itself, which
keeps every event forever, so the history never loses anything the ledger holds.

A page is ``limit`` entries with stream sequences below a cursor (``before``); the next
page's cursor is the oldest sequence handed out. The read model is a contiguous newest
part of a key's history, so entries taken from it below a cursor are exactly the
ledger's; a log shorter than the cap holds the key's whole history and no ledger read
is needed.

Which events belong to a key is decided by :meth:`History.keys`, the projection's own
rule, so the two sources cannot disagree. A desk's events sit on its desk subject, plus
the PIN events entered at it, which sit on the users' subjects; a user's sit on their
user subject, plus their logins, logouts and roams, which sit on desk subjects. The
reader therefore walks the ledger backwards in windows of growing size, each read by a
short-lived consumer that starts at the window's first sequence and filters on the
key's own subject and the other kind's wildcard, and keeps the events of the key. A
page examines at most ``scan_budget`` ledger messages: when that runs out before the
page is full, the page ends early with a cursor where the walk stopped, so no request
reads an unbounded part of a large ledger.

Only messages older than the read model's entries are read this way; they are settled
on every replica, so a consumer on any node of a cluster sees them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError, ServiceUnavailableError

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event

from .projections import History, HistoryEntry
from .projections.history import entry_of
from .readmodels import ReadModels

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
SCAN_BUDGET = 50_000
"""Ledger messages a page may examine before it ends early."""
FIRST_WINDOW = 256
LARGEST_WINDOW = 16_384
FETCH_BATCH = 500


class HistoryCursorError(ValueError):
    """A ``before`` or ``limit`` that does not name a page."""


@dataclass(frozen=True)
class HistoryPage:
    """Entries newest first, and the cursor of the next (older) page if there is one."""

    entries: list[HistoryEntry]
    next_before: int | None


def parse_limit(raw: str | None) -> int:
    """``limit`` from a query string: 1 to :data:`MAX_LIMIT`, default :data:`DEFAULT_LIMIT`."""
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise HistoryCursorError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)


def parse_before(raw: str | None) -> int | None:
    """``before`` from a query string: a ledger stream sequence, 1 or more."""
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1 or len(raw) > 19:
        raise HistoryCursorError(
            f"before must be a ledger sequence (a whole number of 1 or more) as given in"
            f" a page's 'next', not {raw!r}"
        )
    return int(raw)


def _filters(key: str) -> list[str]:
    kind, _, name = key.partition(".")
    if kind == "desk":
        return [subjects.desk_ledger(name), subjects.LEDGER_USERS]
    if kind == "user":
        return [subjects.user_ledger(name), subjects.LEDGER_DESKS]
    raise ValueError(f"not a history key: {key!r}")


class HistoryPages:
    """Pages of one key's history: the read model first, then the ledger."""

    def __init__(
        self,
        js: JetStreamContext,
        read: ReadModels,
        projection: History | None = None,
        *,
        stream: str = streams.LEDGER.name,
        scan_budget: int = SCAN_BUDGET,
    ) -> None:
        self.js = js
        self.read = read
        self.projection = projection or History()
        self.stream = stream
        self.scan_budget = scan_budget
        self.messages_read = 0
        """Ledger messages examined so far (tests and cost checks)."""

    async def page(self, key: str, before: int | None, limit: int) -> HistoryPage:
        """Up to ``limit`` entries of ``key`` below ``before`` (all when ``None``), newest
        first. Raises :class:`HistoryCursorError` for a cursor past the ledger's end."""
        state = (await self.js.stream_info(self.stream)).state
        last, first = int(state.last_seq), int(state.first_seq)
        if before is not None and before > last + 1:
            raise HistoryCursorError(f"before={before} is past the ledger's last sequence ({last})")
        stored = (await self.read.history(key)).entries
        newest = [e for e in reversed(stored) if before is None or e.seq < before]
        if len(newest) > limit:
            return HistoryPage(newest[:limit], newest[limit - 1].seq)
        if len(stored) < self.projection.cap:
            # The read model holds every event of the key.
            return HistoryPage(newest, None)
        floor = newest[-1].seq if newest else (before if before is not None else last + 1)
        want = limit - len(newest)
        older, stopped_at, exhausted = await self._walk_back(key, floor, first, want + 1)
        entries = newest + older[:want]
        if len(older) > want:
            return HistoryPage(entries, entries[-1].seq)
        if exhausted:
            return HistoryPage(entries, None)
        return HistoryPage(entries, stopped_at)

    async def _walk_back(
        self, key: str, below: int, first: int, want: int
    ) -> tuple[list[HistoryEntry], int, bool]:
        """Entries of ``key`` below ``below``, newest first, until ``want`` are found,
        the stream's first message is passed or the budget is spent. Returns them, the
        sequence the walk stopped at (every older entry is below it) and whether the
        walk reached the stream's start."""
        filters = _filters(key)
        found: list[HistoryEntry] = []
        examined = 0
        window = FIRST_WINDOW
        high = below
        while high > first and len(found) < want and examined < self.scan_budget:
            # A window never spans more sequences than the budget has left, so a page
            # examines at most the budget.
            low = max(first, high - min(window, self.scan_budget - examined))
            window = min(window * 4, LARGEST_WINDOW)
            batch: list[HistoryEntry] = []
            for seq, data in await self._read_range(filters, low, high):
                examined += 1
                try:
                    event = decode_event(data)
                except EventDecodeError as exc:
                    log.error(
                        "ledger event cannot be decoded by this build",
                        extra={"stream": self.stream, "seq": seq, "error": str(exc)},
                    )
                    continue
                if key in self.projection.keys(event):
                    batch.append(entry_of(event, seq))
            found.extend(reversed(batch))
            high = low
        self.messages_read += examined
        return found, high, high <= first

    async def _read_range(self, filters: list[str], low: int, high: int) -> list[tuple[int, bytes]]:
        """The messages matching ``filters`` with ``low <= seq < high``, in order."""
        config = js_api.ConsumerConfig(
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=low,
            ack_policy=js_api.AckPolicy.NONE,
            filter_subjects=filters,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=30.0,
        )
        info = await self.js.add_consumer(self.stream, config)
        remaining = int(info.num_pending or 0)
        out: list[tuple[int, bytes]] = []
        try:
            if remaining == 0:
                return out
            sub = await self.js.pull_subscribe_bind(stream=self.stream, name=info.name)
            try:
                unanswered = 0
                while remaining > 0:
                    try:
                        msgs = await sub.fetch(min(remaining, FETCH_BATCH), timeout=5.0)
                    except ServiceUnavailableError:
                        # The pull subject is not known on this server yet (a cluster).
                        unanswered += 1
                        if unanswered > 20:
                            raise
                        await asyncio.sleep(0.05)
                        continue
                    remaining -= len(msgs)
                    for msg in msgs:
                        seq = msg.metadata.sequence.stream
                        if seq >= high:
                            return out
                        out.append((seq, msg.data))
            finally:
                await sub.unsubscribe()
        finally:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(self.stream, info.name)
        return out
