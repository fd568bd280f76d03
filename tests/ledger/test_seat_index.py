"""The seat index: a login finds the user's seats without reading every desk, and the
exclusive policy holds exactly as with the full read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LoggedOut, LogoutReason
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.seats import SeatIndex, SeatIndexBehind
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import at, log_in, log_out


@pytest.fixture
async def store(js: JetStreamContext) -> EventStore:
    store = EventStore(js)
    await store.ensure_stream()
    return store


@pytest.fixture
async def index(js: JetStreamContext, store: EventStore) -> AsyncIterator[SeatIndex]:
    index = SeatIndex(js)
    await index.start()
    yield index
    await index.stop()


async def test_the_index_starts_from_the_desks_last_events_and_follows_new_ones(
    js: JetStreamContext, store: EventStore
) -> None:
    plain = Ledger(store)
    for n in range(6):
        await plain.execute(log_in(f"HD000{n}", f"1{n:02d}", now=at(n)))
    await plain.execute(log_out("HD0002", now=at(10)))
    await plain.execute(log_in("HD0003", "200", "103", now=at(11)))  # 103 roamed out
    index = SeatIndex(js)
    await index.start()
    try:
        for user in ["100", "102", "103", "200"]:
            assert await index.seats_of(user) == await plain.seats_of(user), user
        events = await Ledger(store, seat_index=index).execute(log_in("HD0009", "100", now=at(12)))
        assert [type(e) for e in events][-1] is LoggedOut
        assert list(await index.seats_of("100", at_least=await store.last_seq())) == ["HD0009"]
    finally:
        await index.stop()


async def test_a_login_with_the_index_reads_a_few_messages_however_many_desks(
    store: EventStore, index: SeatIndex
) -> None:
    ledger = Ledger(store, seat_index=index)
    for n in range(60):
        await ledger.execute(log_in(f"HD{n:04d}", str(1000 + n), now=at(n)))
    before = store.messages_read
    events = await ledger.execute(log_in("HD0007", "1003", "1007", now=at(100)))
    # 1003 roams HD0007 (its user 1007 leaves) and leaves HD0003.
    assert [(type(e).__name__, e.desk) for e in events] == [
        ("Roamed", "HD0007"),
        ("LoggedOut", "HD0003"),
    ]
    assert store.messages_read - before <= 4  # the user's tail and the desk's last event
    assert (await ledger.user("1003")).desk == "HD0007"
    assert (await ledger.user("1007")).desk is None


async def test_one_user_logging_in_at_three_desks_at_once_ends_at_exactly_one(
    store: EventStore, index: SeatIndex
) -> None:
    ledger = Ledger(store, seat_index=index)
    desks = ["HD0001", "HD0002", "HD0003"]
    for r in range(5):
        user = f"5{r}"
        await asyncio.gather(*(ledger.execute(log_in(d, user, now=at(r))) for d in desks))
        seats = await Ledger(store).seats_of(user)  # the full read, as the truth
        assert len(seats) == 1, seats
        await ledger.execute(log_out(next(iter(seats)), user, now=at(r)))


async def test_a_login_elsewhere_leaves_the_old_desk_with_the_index(
    store: EventStore, index: SeatIndex
) -> None:
    ledger = Ledger(store, seat_index=index)
    await ledger.execute(log_in("HD0001", "100"))
    events = await ledger.execute(log_in("HD0002", "100", now=at(5)))
    assert isinstance(events[1], LoggedOut)
    assert (events[1].desk, events[1].reason) == ("HD0001", LogoutReason.ELSEWHERE)
    left, _ = await store.load(subjects.desk_ledger("HD0001"))
    assert isinstance(left[-1], LoggedOut)


async def test_an_index_that_does_not_catch_up_falls_back_to_reading_every_desk(
    js: JetStreamContext, store: EventStore
) -> None:
    await Ledger(store).execute(log_in("HD0001", "100"))
    stalled = SeatIndex(js, wait_seconds=0.2)  # never started: it never catches up
    with pytest.raises(SeatIndexBehind):
        await stalled.seats_of("100")
    ledger = Ledger(store, seat_index=stalled)
    events = await ledger.execute(log_in("HD0002", "100", now=at(5)))
    assert [type(e).__name__ for e in events] == ["LoggedIn", "LoggedOut"]
