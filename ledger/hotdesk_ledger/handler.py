"""The ledger command handler: load, decide, append, retry on conflict.

:class:`Ledger` is what the IVR, the presence service (admin and auto logouts) and the
CLI call: ``await ledger.execute(command)`` returns the events it appended or raises a
:class:`~hotdesk_ledger.errors.DomainError`.

Where a user sits
-----------------
Seats live on desk subjects only, so the user aggregate knows nothing about them. A
desk's state is determined by its last event alone (``LoggedIn``/``Roamed`` seat the
event's user, ``LoggedOut`` frees the desk), so the store finds a user's desks by
reading the last message of every desk subject in one pass (an ephemeral consumer on
``hotdesk.ledger.desk.*`` with ``DeliverPolicy.LAST_PER_SUBJECT``). No second index
exists that could disagree with the ledger. A busy caller (the IVR) passes a
:class:`~hotdesk_ledger.seats.SeatIndex`, which follows the same last messages live and
answers a read only once it has seen the stream up to the sequence that read needs.

Exclusive policy and the two-desk race
--------------------------------------
A login first seats the user at the target desk (one append, checked against that
desk's sequence), then re-reads the seats and logs the user out, with
``LoggedOut(reason=elsewhere)``, of every desk but the one holding the newest seat
(highest stream sequence), each append checked against that desk's own sequence. When
the same user logs in at two desks at once, both appends succeed; the later one has the
higher sequence and its re-read sees both seats, so every racer agrees to keep the later
seat and at most one of the competing logouts is stored (the other conflicts and, on
reload, finds nothing to do). The user ends at exactly one desk. The same pass tidies up
after a process that died between seating and leaving.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from opentelemetry import trace

from hotdesk_contracts import subjects
from hotdesk_contracts.commands import ClearPinLockout, LedgerCommand, LogIn, LogOut
from hotdesk_contracts.directory import Policies
from hotdesk_contracts.events import LedgerEvent, LoggedIn, LoggedOut, Roamed

from .aggregates import (
    DeskState,
    UserCommand,
    UserState,
    decide_desk,
    decide_user,
    evolve,
    plan_leave_elsewhere,
    plan_login,
    replay,
    seats_to_leave,
    settle_lockout,
    user_history_complete,
)
from .errors import ConcurrencyConflict, DomainError
from .seats import SeatIndex, SeatIndexBehind
from .store import EventStore, UnreadableEvent

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("hotdesk_ledger")

DEFAULT_MAX_ATTEMPTS = 5


def desk_from_last(desk: str, last: LedgerEvent | None, seq: int) -> DeskState:
    """A desk's state from its last event alone (seating events carry the whole state)."""
    state = DeskState(desk=desk, last_seq=seq)
    return evolve(state, last) if last is not None else state


class Ledger:
    """Executes ledger commands against the event store with optimistic concurrency."""

    def __init__(
        self,
        store: EventStore,
        policies: Policies | None = None,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        seat_index: SeatIndex | None = None,
    ) -> None:
        self.store = store
        self.policies = policies or Policies()
        self.max_attempts = max_attempts
        self.seat_index = seat_index
        """Where a login and a user lookup find the user's seats (else every desk's
        last message is read each time); :meth:`seats` always reads the stream."""

    # --- reads --------------------------------------------------------------------------
    async def desk(self, desk: str) -> DeskState:
        """The current state of ``desk`` (idle with ``last_seq`` 0 if never used).

        Reads the desk's last event only: seating events carry the desk's whole state.
        """
        last = await self.store.last(subjects.desk_ledger(desk))
        if last is None:
            return DeskState(desk=desk)
        if isinstance(last, UnreadableEvent):
            return DeskState(desk=desk, last_seq=last.seq, unknown=True)
        return desk_from_last(desk, last.event, last.seq)

    async def seats(self) -> dict[str, DeskState]:
        """Every desk that has a ledger, by desk name, from each desk's last event.

        A desk whose last event this build cannot decode is listed with ``unknown``
        set (and no user), rather than failing the whole lookup.
        """
        out: dict[str, DeskState] = {}
        for subject, stored in (await self.store.last_of_each(subjects.LEDGER_DESKS)).items():
            if isinstance(stored, UnreadableEvent):
                desk = subject.rsplit(".", 1)[-1]
                out[desk] = DeskState(desk=desk, last_seq=stored.seq, unknown=True)
                continue
            event = stored.event
            if isinstance(event, LoggedIn | LoggedOut | Roamed):
                out[event.desk] = desk_from_last(event.desk, event, stored.seq)
        return out

    async def seats_of(self, user: str) -> dict[str, DeskState]:
        """The desks where ``user`` sits (more than one only while a race settles)."""
        return {d: s for d, s in (await self.seats()).items() if s.user == user}

    async def _seats_of(self, user: str, at_least: int = 0) -> dict[str, DeskState]:
        """:meth:`seats_of` from the seat index when there is one, as of at least stream
        sequence ``at_least``; the full read when the index lags behind."""
        if self.seat_index is not None:
            try:
                return await self.seat_index.seats_of(user, at_least=at_least)
            except SeatIndexBehind as exc:
                log.warning("seat index behind: reading every desk", extra={"error": str(exc)})
        return await self.seats_of(user)

    async def user(self, user: str, *, with_desk: bool = True) -> UserState:
        """The user's PIN state and, with ``with_desk``, the desk they sit at.

        Reads the user's events newest first and stops as soon as the state no longer
        depends on older ones (:func:`~.aggregates.user_history_complete`): at most
        ``pin_max_failures`` + 1 messages however long the history.
        """
        # Newest first, only as far back as the state depends on (a bounded tail).
        tail: list[LedgerEvent] = []
        seq = 0
        async for found in self.store.newest_first(subjects.user_ledger(user)):
            seq = seq or found.seq
            if isinstance(found, UnreadableEvent):
                continue  # logged by the store; a newer build's event
            tail.append(found.event)
            if user_history_complete(tail, self.policies):
                break
        events = tail[::-1]
        # A lockout follows from the failures even if its PinLockedOut was never stored.
        state = settle_lockout(replay(UserState(user=user), events), self.policies)
        desk = None
        if with_desk:
            held = await self._seats_of(user)
            if held:
                desk = max(held.values(), key=lambda s: s.last_seq).desk
        return UserState(
            user=user,
            recent_failures=state.recent_failures,
            locked_until=state.locked_until,
            desk=desk,
            last_seq=seq,
        )

    # --- commands -----------------------------------------------------------------------
    async def execute(
        self,
        command: LedgerCommand,
        *,
        now: datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[LedgerEvent]:
        """Decide ``command`` and append its events; return the events appended.

        ``now`` defaults to ``command.at``. ``headers`` are added to every published
        message. A conflict reloads and decides again, up to ``max_attempts`` times,
        then raises :class:`ConcurrencyConflict`. A refusal raises the aggregate's
        :class:`~hotdesk_ledger.errors.DomainError`.

        Runs in an ``execute <Command>`` span, a child of the caller's current span;
        each appended event's ``publish`` span is a child of it.
        """
        at = now or command.at
        name = type(command).__name__
        attributes = {"hotdesk.command": name}
        if command.user:
            attributes["hotdesk.user"] = command.user
        if not isinstance(command, ClearPinLockout):
            attributes["hotdesk.desk"] = command.desk
        with _tracer.start_as_current_span(
            f"execute {name}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                if isinstance(command, LogIn):
                    events = await self._log_in(command, at, headers)
                elif isinstance(command, LogOut):
                    events = await self._log_out(command, at, headers)
                else:
                    events = await self._pin(command, at, headers)
            except DomainError as exc:
                # A refusal is an answer, not a failure of the ledger.
                span.set_attribute("hotdesk.refused", exc.code)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                raise
            names = [type(e).__name__ for e in events]
            span.set_attribute("hotdesk.events", names)
            log.info(
                "ledger command executed",
                extra={
                    "command": name,
                    "command_id": command.command_id,
                    "correlation_id": command.correlation_id,
                    "events": names,
                },
            )
        return events

    async def _log_in(
        self, command: LogIn, now: datetime, headers: Mapping[str, str] | None
    ) -> list[LedgerEvent]:
        subject = subjects.desk_ledger(command.desk)
        appended: list[LedgerEvent] = []
        for _attempt in range(self.max_attempts):
            user = await self.user(command.user, with_desk=False)
            target = await self.desk(command.desk)
            seats = (
                await self._seats_of(command.user, target.last_seq)
                if self.policies.exclusive
                else {}
            )
            plan = plan_login(target, user, seats, command, now, self.policies)
            try:
                result = await self.store.append(subject, plan.seat, target.last_seq, None, headers)
            except ConcurrencyConflict:
                continue
            appended.extend(s.event for s in result.stored)
            seated_at = result.last_seq
            break
        else:
            raise ConcurrencyConflict(subject, None, f"gave up after {self.max_attempts} attempts")
        if self.policies.exclusive:
            appended.extend(await self._leave_other_seats(command, now, headers, seated_at))
        return appended

    async def _leave_other_seats(
        self,
        command: LogIn,
        now: datetime,
        headers: Mapping[str, str] | None,
        seated_at: int,
    ) -> list[LedgerEvent]:
        appended: list[LedgerEvent] = []
        for attempt in range(self.max_attempts):
            # Every seat up to our own (seated_at) must be seen: a racer's earlier seat
            # is left here. After a conflict the sequence that beat us is unknown, so
            # the retry reads every desk.
            seats = (
                await self._seats_of(command.user, seated_at)
                if attempt == 0
                else await self.seats_of(command.user)
            )
            leave = seats_to_leave(command.user, seats)
            if not leave:
                return appended
            conflicted = False
            for desk, events in plan_leave_elsewhere(command, leave, now).items():
                expected = next(s.last_seq for s in leave if s.desk == desk)
                try:
                    result = await self.store.append(
                        subjects.desk_ledger(desk), events, expected, None, headers
                    )
                except ConcurrencyConflict:
                    conflicted = True
                    continue
                appended.extend(s.event for s in result.stored)
            if not conflicted:
                return appended
        raise ConcurrencyConflict(
            subjects.LEDGER_DESKS, None, f"could not settle {command.user}'s seats"
        )

    async def _log_out(
        self, command: LogOut, now: datetime, headers: Mapping[str, str] | None
    ) -> list[LedgerEvent]:
        subject = subjects.desk_ledger(command.desk)
        for _attempt in range(self.max_attempts):
            state = await self.desk(command.desk)
            events = decide_desk(state, command, now)
            try:
                result = await self.store.append(subject, events, state.last_seq, None, headers)
            except ConcurrencyConflict:
                continue
            return [s.event for s in result.stored]
        raise ConcurrencyConflict(subject, None, f"gave up after {self.max_attempts} attempts")

    async def _pin(
        self,
        command: UserCommand,
        now: datetime,
        headers: Mapping[str, str] | None,
    ) -> list[LedgerEvent]:
        subject = subjects.user_ledger(command.user)
        for _attempt in range(self.max_attempts):
            state = await self.user(command.user, with_desk=False)
            events = decide_user(state, command, now, self.policies)
            try:
                result = await self.store.append(subject, events, state.last_seq, None, headers)
            except ConcurrencyConflict:
                continue
            return [s.event for s in result.stored]
        raise ConcurrencyConflict(subject, None, f"gave up after {self.max_attempts} attempts")
