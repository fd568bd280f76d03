"""Who sits at which desk, followed live from the desk subjects of the ledger.

Without it, finding a user's seats reads the last message of every desk subject (see
:meth:`~hotdesk_ledger.handler.Ledger.seats`), and a login does that up to three times:
a busy IVR then reads thousands of messages per login, more with every desk. A
:class:`SeatIndex` reads them once, from an ordered consumer on ``hotdesk.ledger.desk.*``
that delivers the last message of each desk and then every new one, and answers from
memory.

Reads stay as consistent as the full scan where the ledger depends on it: a reader
passes the stream sequence it must have seen (``at_least``, e.g. the sequence of the
seat it just appended), and the index answers only once it has applied every desk
message up to there. The consumer delivers in stream order, so having applied
sequence *n* means having seen every desk event at or below *n*. An index that falls
behind for longer than ``wait_seconds`` raises :class:`SeatIndexBehind`, and the ledger
falls back to the full scan.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event
from hotdesk_contracts.events import LoggedIn, LoggedOut, Roamed

from .aggregates import DeskState, evolve

log = logging.getLogger(__name__)

WAIT_SECONDS = 5.0


class SeatIndexBehind(Exception):
    """The index has not applied the sequence a read needs (or has not caught up)."""


class SeatIndex:
    """desk → its state, and user → the desks they sit at, from the ledger stream."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: streams.StreamSpec = streams.LEDGER,
        *,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._js = js
        self._stream = spec.name
        self.wait_seconds = wait_seconds
        self.desks: dict[str, DeskState] = {}
        self._seated: dict[str, set[str]] = {}
        self.applied = 0
        """The stream sequence of the last desk message applied."""
        self.caught_up = asyncio.Event()
        """Set once the desks' last messages as of the start are applied."""
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe; the index fills in the background (see :attr:`caught_up`)."""
        info = await self._js.stream_info(self._stream, subjects_filter=subjects.LEDGER_DESKS)
        if not info.state.subjects:
            self.caught_up.set()  # no desk has a ledger yet: nothing will be delivered
        self._sub = await self._js.subscribe(
            subjects.LEDGER_DESKS,
            stream=self._stream,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            cb=self._on_message,
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(SeatIndexBehind("the seat index stopped"))
        self._waiters.clear()

    async def _on_message(self, msg: Msg) -> None:
        meta = msg.metadata
        self.apply(msg.subject, meta.sequence.stream, msg.data)
        if meta.num_pending == 0:
            self.caught_up.set()

    def apply(self, subject: str, seq: int, data: bytes) -> None:
        """Fold in the desk message ``data`` stored at ``seq`` on ``subject``."""
        desk = subject.rsplit(".", 1)[-1]
        try:
            event = decode_event(data)
        except EventDecodeError as exc:
            # A newer build's event: the desk is unknown here, as Ledger.seats says.
            log.error(
                "ledger event cannot be decoded by this build",
                extra={"subject": subject, "seq": seq, "error": str(exc)},
            )
            self._set(desk, DeskState(desk=desk, last_seq=seq, unknown=True))
        else:
            if isinstance(event, LoggedIn | LoggedOut | Roamed):
                self._set(desk, evolve(DeskState(desk=desk, last_seq=seq), event))
        if seq > self.applied:
            self.applied = seq
            if self._waiters:
                self._wake()

    def _set(self, desk: str, state: DeskState) -> None:
        old = self.desks.get(desk)
        if old is not None and old.user is not None:
            held = self._seated.get(old.user)
            if held is not None:
                held.discard(desk)
                if not held:
                    del self._seated[old.user]
        self.desks[desk] = state
        if state.user is not None:
            self._seated.setdefault(state.user, set()).add(desk)

    def _wake(self) -> None:
        still = []
        for seq, waiter in self._waiters:
            if seq <= self.applied:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((seq, waiter))
        self._waiters = still

    async def wait_for(self, at_least: int = 0) -> None:
        """Return once the index has caught up and applied sequence ``at_least``;
        raise :class:`SeatIndexBehind` after :attr:`wait_seconds`."""
        if self.caught_up.is_set() and self.applied >= at_least:
            return
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self.caught_up.wait()
                if self.applied < at_least:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append((at_least, waiter))
                    await waiter
        except TimeoutError:
            raise SeatIndexBehind(
                f"seat index at sequence {self.applied}, a read needs {at_least}"
            ) from None

    async def seats_of(self, user: str, *, at_least: int = 0) -> dict[str, DeskState]:
        """The desks where ``user`` sits, as of at least stream sequence ``at_least``."""
        await self.wait_for(at_least)
        return {desk: self.desks[desk] for desk in self._seated.get(user, ())}
