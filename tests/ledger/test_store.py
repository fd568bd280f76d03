"""The event store and the command handler against a real nats-server."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.events import Cause, LoggedIn, LoggedOut, LogoutReason, Roamed
from hotdesk_ledger.errors import ConcurrencyConflict, DeskChanged, DeskIdle, UserLockedOut
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import T0, at, clear_lockout, log_in, log_out, pin_failure


async def store_for(js: JetStreamContext) -> EventStore:
    store = EventStore(js)
    await store.ensure_stream()
    return store


def logged_in(desk: str, user: str, event_id: str) -> LoggedIn:
    return LoggedIn(
        event_id=event_id,
        at=T0,
        cause=Cause(actor=f"user:{user}"),
        correlation_id=event_id,
        desk=desk,
        user=user,
    )


async def test_a_new_subject_loads_empty_at_sequence_zero(js: JetStreamContext) -> None:
    store = await store_for(js)
    assert await store.load(subjects.desk_ledger("HD0001")) == ([], 0)


async def test_append_then_load_returns_the_events_and_the_last_sequence(
    js: JetStreamContext,
) -> None:
    store = await store_for(js)
    subject = subjects.desk_ledger("HD0001")
    await store.append(subjects.desk_ledger("HD0009"), [logged_in("HD0009", "9", "other")], 0)
    result = await store.append(subject, [logged_in("HD0001", "100", "e1")], 0)
    assert result.duplicates == 0
    events, seq = await store.load(subject)
    assert [e.event_id for e in events] == ["e1"]
    assert seq == result.last_seq == 2


async def test_append_at_a_stale_sequence_raises_a_typed_conflict(js: JetStreamContext) -> None:
    store = await store_for(js)
    subject = subjects.desk_ledger("HD0001")
    await store.append(subject, [logged_in("HD0001", "100", "e1")], 0)
    with pytest.raises(ConcurrencyConflict) as err:
        await store.append(subject, [logged_in("HD0001", "200", "e2")], 0)
    assert err.value.code == "conflict"
    assert err.value.subject == subject
    events, _ = await store.load(subject)
    assert [e.event_id for e in events] == ["e1"]


async def test_a_duplicate_message_id_is_dropped_by_the_server(js: JetStreamContext) -> None:
    store = await store_for(js)
    subject = subjects.desk_ledger("HD0001")
    first = await store.append(subject, [logged_in("HD0001", "100", "same")], None)
    again = await store.append(subject, [logged_in("HD0001", "100", "same")], None)
    assert (again.duplicates, again.stored, again.last_seq) == (1, [], first.last_seq)
    events, _ = await store.load(subject)
    assert len(events) == 1


async def test_trace_headers_travel_with_the_appended_message(js: JetStreamContext) -> None:
    store = await store_for(js)
    subject = subjects.desk_ledger("HD0001")
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await store.append(
        subject, [logged_in("HD0001", "100", "t1")], 0, None, {"traceparent": traceparent}
    )
    raw = await js.get_last_msg(store.stream, subject)
    assert raw.headers is not None
    assert raw.headers["traceparent"] == traceparent
    assert raw.headers["Nats-Msg-Id"] == "t1"


async def test_fifty_racers_for_one_desk_leave_one_winner_per_round(js: JetStreamContext) -> None:
    ledger = Ledger(await store_for(js))
    desk = "HD0001"
    rounds = 4
    holder: str | None = None
    for r in range(rounds):
        users = [f"{r}{i:02d}" for i in range(50)]
        outcomes = await asyncio.gather(
            *(ledger.execute(log_in(desk, u, seen_user=holder, now=at(r))) for u in users),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if isinstance(o, list)]
        refused = [o for o in outcomes if isinstance(o, DeskChanged)]
        assert len(winners) == 1, outcomes
        assert len(refused) == 49
        (event,) = winners[0]
        assert isinstance(event, LoggedIn if holder is None else Roamed)
        holder = event.user
        assert (await ledger.desk(desk)).user == holder
    events, _ = await ledger.store.load(subjects.desk_ledger(desk))
    assert len(events) == rounds
    assert len({e.event_id for e in events}) == rounds


async def test_a_retried_login_appends_nothing_twice(js: JetStreamContext) -> None:
    ledger = Ledger(await store_for(js))
    command = log_in("HD0001", "100")
    assert len(await ledger.execute(command)) == 1
    assert await ledger.execute(command) == []
    events, _ = await ledger.store.load(subjects.desk_ledger("HD0001"))
    assert len(events) == 1


async def test_login_elsewhere_logs_the_user_out_of_the_old_desk(js: JetStreamContext) -> None:
    ledger = Ledger(await store_for(js))
    await ledger.execute(log_in("HD0001", "100"))
    events = await ledger.execute(log_in("HD0002", "100", now=at(5)))
    assert [type(e).__name__ for e in events] == ["LoggedIn", "LoggedOut"]
    assert isinstance(events[1], LoggedOut)
    assert (events[1].desk, events[1].reason) == ("HD0001", LogoutReason.ELSEWHERE)
    assert (await ledger.desk("HD0001")).user is None
    assert (await ledger.user("100")).desk == "HD0002"


async def test_one_user_logging_in_at_two_desks_at_once_ends_at_exactly_one(
    js: JetStreamContext,
) -> None:
    ledger = Ledger(await store_for(js))
    desks = ["HD0001", "HD0002", "HD0003"]
    for r in range(5):
        user = f"5{r}"
        await asyncio.gather(*(ledger.execute(log_in(d, user, now=at(r))) for d in desks))
        seats = await ledger.seats_of(user)
        assert len(seats) == 1, seats
        for d in desks:
            if (await ledger.desk(d)).user == user:
                await ledger.execute(log_out(d, user, now=at(r)))


async def test_logout_of_an_idle_desk_is_refused(js: JetStreamContext) -> None:
    ledger = Ledger(await store_for(js))
    await ledger.execute(log_in("HD0001", "100"))
    await ledger.execute(log_out("HD0001", "100"))
    with pytest.raises(DeskIdle) as err:
        await ledger.execute(log_out("HD0001"))
    assert err.value.code == "desk_idle"


async def test_pin_lockout_holds_across_calls_and_desks_until_cleared(
    js: JetStreamContext,
) -> None:
    ledger = Ledger(await store_for(js))
    desks = ["HD0001", "HD0002", "HD0003", "HD0004", "HD0005"]
    last: list[str] = []
    for n, desk in enumerate(desks):
        last = [type(e).__name__ for e in await ledger.execute(pin_failure("100", desk, now=at(n)))]
    assert last == ["PinRejected", "PinLockedOut"]
    with pytest.raises(UserLockedOut) as err:
        await ledger.execute(log_in("HD0009", "100", now=at(10)))
    assert err.value.code == "locked_out"
    with pytest.raises(UserLockedOut):
        await ledger.execute(pin_failure("100", "HD0009", now=at(11)))
    cleared = await ledger.execute(clear_lockout("100", now=at(12)))
    assert [type(e).__name__ for e in cleared] == ["PinLockoutCleared"]
    seated = await ledger.execute(log_in("HD0009", "100", now=at(13)))
    assert [type(e).__name__ for e in seated] == ["LoggedIn"]


async def test_a_lockout_lifts_by_itself_after_its_time(js: JetStreamContext) -> None:
    ledger = Ledger(await store_for(js))
    for n in range(5):
        await ledger.execute(pin_failure("100", now=at(n)))
    until = (await ledger.user("100")).locked_until
    assert until is not None
    with pytest.raises(UserLockedOut):
        await ledger.execute(log_in("HD0001", "100", now=at(60)))
    seconds = (until - T0).total_seconds()
    assert len(await ledger.execute(log_in("HD0001", "100", now=at(seconds)))) == 1
