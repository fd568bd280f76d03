"""The desk and user aggregates: frozen state, pure ``decide`` and ``evolve``.

A desk holds at most one user. Seating events (``LoggedIn``, ``Roamed``, ``LoggedOut``)
live on the desk's subject; PIN events (``PinRejected``, ``PinLockedOut``,
``PinLockoutCleared``) live on the user's subject. Nothing here reads a clock or touches
NATS: ``now`` and the policies are passed in, and the store keeps ``last_seq``.

Event ids are derived from the command id (``<command_id>:<index>``, or
``<command_id>:leave:<desk>`` for an exclusive-policy logout elsewhere), so deciding the
same command again yields the same ids and JetStream's ``Nats-Msg-Id`` dedupe makes a
retried append idempotent.

The lockout follows from ``PinRejected`` alone
----------------------------------------------
The failure that reaches ``pin_max_failures`` is appended as ``PinRejected`` followed by
``PinLockedOut``: two publishes, and a process can die between them. So the lockout is
not taken from ``PinLockedOut``: :func:`settle_lockout` derives it from the failures
themselves (``pin_max_failures`` of them inside the window lock the user until the last
one plus ``pin_lockout_seconds``), and every decision about a user settles the state
first. ``PinLockedOut`` stays in the ledger as the readable announcement of the lockout
(and still ends it early when cleared), but losing it cannot let a login through.

JetStream's atomic batch publish (nats-server 2.12+) could store both in one go, but it
needs ``allow_atomic`` on the ledger stream and refuses a retried batch (error 10201,
duplicate message id) instead of acknowledging it as a duplicate; deriving the lockout
keeps retries idempotent and works on any server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import msgspec

from hotdesk_contracts.commands import (
    ClearPinLockout,
    LedgerCommand,
    LogIn,
    LogOut,
    RecordPinFailure,
)
from hotdesk_contracts.directory import Policies
from hotdesk_contracts.events import (
    LedgerEvent,
    LoggedIn,
    LoggedOut,
    LogoutReason,
    PinLockedOut,
    PinLockoutCleared,
    PinRejected,
    Roamed,
)

from .errors import (
    DeskChanged,
    DeskIdle,
    DeskStateUnknown,
    NotLockedOut,
    SeatedElsewhere,
    UserLockedOut,
    WrongAggregate,
)

DeskEvent = LoggedIn | LoggedOut | Roamed
UserEvent = PinRejected | PinLockedOut | PinLockoutCleared
DeskCommand = LogIn | LogOut
UserCommand = RecordPinFailure | ClearPinLockout


class DeskState(msgspec.Struct, frozen=True, kw_only=True):
    """One desk: who sits there, since when, and the ledger sequence it was read at."""

    desk: str
    user: str | None = None
    """The user logged in at the desk; ``None`` when the desk is idle."""
    since: datetime | None = None
    """When ``user`` sat down (the ``at`` of their ``LoggedIn`` or ``Roamed``)."""
    last_seq: int = 0
    """Stream sequence of the last event on the desk's subject; 0 for a new desk.

    This is what an append passes as ``Nats-Expected-Last-Subject-Sequence``."""
    unknown: bool = False
    """The desk's last event could not be decoded: who sits there is unknown, and
    :func:`decide_desk` refuses every command with :class:`DeskStateUnknown`."""


class UserState(msgspec.Struct, frozen=True, kw_only=True):
    """One user: recent PIN failures, lockout, and the desk they sit at if known."""

    user: str
    recent_failures: tuple[datetime, ...] = ()
    """Times of the PIN failures that counted towards the last ``PinRejected``.

    Bounded: each ``PinRejected`` says how many failures were inside the window, so
    only that many are kept (at most ``pin_max_failures``)."""
    locked_until: datetime | None = None
    desk: str | None = None
    """Where the user sits. Not derived from user events (seats live on desk subjects):
    the store fills it in from the desks' last events."""
    last_seq: int = 0

    def failures_within(self, now: datetime, window_seconds: float) -> int:
        """PIN failures in the ``window_seconds`` before ``now``."""
        start = now - timedelta(seconds=window_seconds)
        return sum(1 for at in self.recent_failures if at > start)

    def locked_at(self, now: datetime) -> bool:
        """Whether a lockout is in force at ``now`` (it lifts by itself at ``until``)."""
        return self.locked_until is not None and now < self.locked_until


def _event_id(command: LedgerCommand, index: int) -> str:
    return f"{command.command_id}:{index}"


def leave_event_id(command: LedgerCommand, desk: str) -> str:
    """The id of the ``LoggedOut(elsewhere)`` a login appends to another ``desk``."""
    return f"{command.command_id}:leave:{desk}"


# --- desk -----------------------------------------------------------------------------
def decide_desk(state: DeskState, command: DeskCommand, now: datetime) -> list[DeskEvent]:
    """Decide a seating command on one desk.

    Raises :class:`DeskChanged` when the desk is not held by whom the command expects,
    :class:`DeskIdle` for a logout of an idle desk, :class:`DeskStateUnknown` when
    the desk's last event could not be read. A login by the user already sitting
    there decides nothing (idempotent).
    """
    if command.desk != state.desk:
        raise WrongAggregate(f"command for desk {command.desk} given desk {state.desk}")
    if state.unknown:
        raise DeskStateUnknown(state.desk)
    event_id, cause, correlation = _event_id(command, 0), command.cause, command.correlation_id
    if isinstance(command, LogIn):
        if state.user == command.user:
            return []
        if state.user != command.seen_user:
            raise DeskChanged(state.desk, command.seen_user, state.user)
        if state.user is None:
            return [
                LoggedIn(
                    event_id=event_id,
                    at=now,
                    cause=cause,
                    correlation_id=correlation,
                    desk=state.desk,
                    user=command.user,
                )
            ]
        return [
            Roamed(
                event_id=event_id,
                at=now,
                cause=cause,
                correlation_id=correlation,
                desk=state.desk,
                from_user=state.user,
                user=command.user,
            )
        ]
    if state.user is None:
        raise DeskIdle(state.desk)
    if command.user is not None and command.user != state.user:
        raise DeskChanged(state.desk, command.user, state.user)
    return [
        LoggedOut(
            event_id=event_id,
            at=now,
            cause=cause,
            correlation_id=correlation,
            desk=state.desk,
            user=state.user,
            reason=command.reason,
        )
    ]


def evolve_desk(state: DeskState, event: DeskEvent) -> DeskState:
    """Apply one desk event. ``last_seq`` is left to the caller, who knows the sequence."""
    if isinstance(event, LoggedIn | Roamed):
        return msgspec.structs.replace(state, user=event.user, since=event.at)
    return msgspec.structs.replace(state, user=None, since=None)


# --- user -----------------------------------------------------------------------------
def check_login_allowed(state: UserState, now: datetime) -> None:
    """Raise :class:`UserLockedOut` if the user's PIN lockout is in force at ``now``."""
    if state.locked_until is not None and state.locked_at(now):
        raise UserLockedOut(state.user, state.locked_until)


def settle_lockout(state: UserState, policies: Policies) -> UserState:
    """The user's state with a lockout their failures imply but no ``PinLockedOut`` states.

    ``pin_max_failures`` counted failures (see :attr:`UserState.recent_failures`) lock
    the user until the last of them plus ``pin_lockout_seconds``, exactly as the
    ``PinLockedOut`` appended after them would; the failures are then spent, as
    :func:`evolve_user` does for ``PinLockedOut``. A state that already holds its
    lockout is returned unchanged.
    """
    if len(state.recent_failures) < policies.pin_max_failures:
        return state
    until = state.recent_failures[-1] + timedelta(seconds=policies.pin_lockout_seconds)
    if state.locked_until is not None and state.locked_until > until:
        until = state.locked_until
    return msgspec.structs.replace(state, recent_failures=(), locked_until=until)


def decide_user(
    state: UserState, command: UserCommand, now: datetime, policies: Policies
) -> list[UserEvent]:
    """Decide a PIN command for one user.

    A failure is refused with :class:`UserLockedOut` while a lockout is in force (the
    IVR must not take PINs then). The ``pin_max_failures``-th failure inside
    ``pin_window_seconds`` also locks the user out for ``pin_lockout_seconds``.
    Clearing a lockout that is not in force raises :class:`NotLockedOut`.
    """
    if command.user != state.user:
        raise WrongAggregate(f"command for user {command.user} given user {state.user}")
    state = settle_lockout(state, policies)
    if isinstance(command, ClearPinLockout):
        if not state.locked_at(now):
            raise NotLockedOut(state.user)
        return [
            PinLockoutCleared(
                event_id=_event_id(command, 0),
                at=now,
                cause=command.cause,
                correlation_id=command.correlation_id,
                user=state.user,
            )
        ]
    check_login_allowed(state, now)
    failures = state.failures_within(now, policies.pin_window_seconds) + 1
    events: list[UserEvent] = [
        PinRejected(
            event_id=_event_id(command, 0),
            at=now,
            cause=command.cause,
            correlation_id=command.correlation_id,
            user=state.user,
            desk=command.desk,
            failures=failures,
        )
    ]
    if failures >= policies.pin_max_failures:
        events.append(
            PinLockedOut(
                event_id=_event_id(command, 1),
                at=now,
                cause=command.cause,
                correlation_id=command.correlation_id,
                user=state.user,
                desk=command.desk,
                until=now + timedelta(seconds=policies.pin_lockout_seconds),
            )
        )
    return events


def evolve_user(state: UserState, event: UserEvent) -> UserState:
    """Apply one user event. ``last_seq`` and ``desk`` are left to the caller."""
    if isinstance(event, PinRejected):
        # The event says how many failures counted: keep exactly those, so the state
        # stays bounded however many failures a user collects over the years.
        kept = state.recent_failures[-(event.failures - 1) :] if event.failures > 1 else ()
        return msgspec.structs.replace(state, recent_failures=(*kept, event.at))
    if isinstance(event, PinLockedOut):
        # A lockout starts a fresh count: the failures that caused it are spent.
        return msgspec.structs.replace(state, recent_failures=(), locked_until=event.until)
    return msgspec.structs.replace(state, recent_failures=(), locked_until=None)


def user_history_complete(newest_first: Sequence[LedgerEvent], policies: Policies) -> bool:
    """Whether a user's latest events (newest first) suffice to replay their state.

    A ``PinLockedOut`` or ``PinLockoutCleared`` sets the whole state, and a
    ``PinRejected`` with ``failures`` 1 starts a fresh count; so does holding
    ``pin_max_failures`` rejections, as no count needs more earlier failures than
    that. A lockout before them has expired: a failure is only recorded while no
    lockout is in force (:func:`decide_user`). Replaying the events found up to here
    from an empty :class:`UserState` thus gives the state replaying all would.
    """
    if not newest_first:
        return False
    oldest = newest_first[-1]
    if isinstance(oldest, PinLockedOut | PinLockoutCleared):
        return True
    if isinstance(oldest, PinRejected) and oldest.failures <= 1:
        return True
    rejected = sum(1 for e in newest_first if isinstance(e, PinRejected))
    return rejected >= policies.pin_max_failures


# --- generic --------------------------------------------------------------------------
State = TypeVar("State", DeskState, UserState)


def decide(
    state: DeskState | UserState, command: LedgerCommand, now: datetime, policies: Policies
) -> list[LedgerEvent]:
    """Decide ``command`` against the aggregate ``state`` it belongs to.

    Desk commands (``LogIn``, ``LogOut``) go to a :class:`DeskState`, PIN commands to a
    :class:`UserState`; a mismatch raises :class:`WrongAggregate`. A login's lockout
    and exclusive-policy checks need both aggregates: see :func:`plan_login`.
    """
    if isinstance(state, DeskState):
        if not isinstance(command, LogIn | LogOut):
            raise WrongAggregate(f"{type(command).__name__} is not a desk command")
        return list(decide_desk(state, command, now))
    if not isinstance(command, RecordPinFailure | ClearPinLockout):
        raise WrongAggregate(f"{type(command).__name__} is not a user command")
    return list(decide_user(state, command, now, policies))


def evolve(state: State, event: LedgerEvent) -> State:
    """Apply one event to the aggregate it belongs to; others' events are ignored."""
    if isinstance(state, DeskState):
        if isinstance(event, LoggedIn | LoggedOut | Roamed) and event.desk == state.desk:
            return evolve_desk(state, event)
        return state
    if isinstance(event, PinRejected | PinLockedOut | PinLockoutCleared) and (
        event.user == state.user
    ):
        return evolve_user(state, event)
    return state


def replay(state: State, events: Iterable[LedgerEvent]) -> State:
    """Fold ``events`` into ``state`` with :func:`evolve`."""
    for event in events:
        state = evolve(state, event)
    return state


# --- a login across desks (exclusive policy) --------------------------------------------
class LoginPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one login appends: ``seat`` on the target desk, ``leave`` on other desks."""

    seat: list[DeskEvent]
    leave: dict[str, list[LoggedOut]]
    """Desk -> the ``LoggedOut(elsewhere)`` to append there, each checked against that
    desk's own ``last_seq``."""


def plan_login(
    target: DeskState,
    user: UserState,
    seats: Mapping[str, DeskState],
    command: LogIn,
    now: datetime,
    policies: Policies,
) -> LoginPlan:
    """Plan a login of ``command.user`` at ``target``.

    ``seats`` are the states of every desk where the user currently sits (the target
    may be among them). Under the exclusive policy the user leaves each other desk with
    ``LoggedOut(reason=elsewhere)``; with ``command.move`` false that is refused with
    :class:`SeatedElsewhere` instead. A locked-out user is refused with
    :class:`UserLockedOut`.
    """
    if command.user != user.user:
        raise WrongAggregate(f"login of {command.user} given user {user.user}")
    check_login_allowed(settle_lockout(user, policies), now)
    others = [s for desk, s in seats.items() if desk != target.desk and s.user == command.user]
    if policies.exclusive and others and not command.move:
        raise SeatedElsewhere(command.user, others[0].desk)
    seat = decide_desk(target, command, now)
    leave = plan_leave_elsewhere(command, others, now) if policies.exclusive else {}
    return LoginPlan(seat=seat, leave=leave)


def plan_leave_elsewhere(
    command: LogIn, seats: Iterable[DeskState], now: datetime
) -> dict[str, list[LoggedOut]]:
    """``LoggedOut(elsewhere)`` for each of ``seats`` that ``command.user`` occupies."""
    return {
        s.desk: [
            LoggedOut(
                event_id=leave_event_id(command, s.desk),
                at=now,
                cause=command.cause,
                correlation_id=command.correlation_id,
                desk=s.desk,
                user=command.user,
                reason=LogoutReason.ELSEWHERE,
            )
        ]
        for s in seats
        if s.user == command.user
    }


def seats_to_leave(user: str, seats: Mapping[str, DeskState]) -> list[DeskState]:
    """After a login, the seats ``user`` must leave so that exactly one remains.

    The seat with the highest ledger sequence (the latest login) is kept: every racer
    that logged the same user in somewhere computes the same answer from the stream,
    so concurrent logins converge on one desk.
    """
    held = [s for s in seats.values() if s.user == user]
    if len(held) <= 1:
        return []
    newest = max(held, key=lambda s: s.last_seq)
    return [s for s in held if s is not newest]
