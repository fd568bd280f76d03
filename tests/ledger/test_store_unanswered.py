"""Appends and lookups that get no answer (a stream electing its leader, a paused
server) are sent again, and an append whose answer was lost is stored exactly once."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import nats
import nats.errors
import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api

from hotdesk_contracts import subjects
from hotdesk_contracts.events import Cause, LoggedIn
from hotdesk_ledger.errors import ConcurrencyConflict
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import T0, log_in
from tests.support.natsserver import NatsServer

SUBJECT = subjects.desk_ledger("HD0001")


def logged_in(user: str, event_id: str) -> LoggedIn:
    return LoggedIn(
        event_id=event_id,
        at=T0,
        cause=Cause(actor=f"user:{user}"),
        correlation_id=event_id,
        desk="HD0001",
        user=user,
    )


class LosingAnswers:
    """The real JetStream context, except that the first ``lose`` publishes get no
    answer: ``before`` runs against the real server (storing the message, or someone
    else's), then the publish raises the client's timeout."""

    def __init__(self, js: JetStreamContext, lose: int, before: str) -> None:
        self.js = js
        self.lose = lose
        self.before = before
        self.publishes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> js_api.PubAck:
        self.publishes += 1
        if self.publishes > self.lose:
            return await self.js.publish(subject, payload, headers=headers)
        if self.before == "stored":
            await self.js.publish(subject, payload, headers=headers)
        elif self.before == "someone else":
            other = logged_in("200", f"other-{self.publishes}")
            await EventStore(self.js).append(subject, [other], None)
        raise nats.errors.TimeoutError


async def store_over(js: JetStreamContext, lose: int, before: str) -> EventStore:
    await EventStore(js).ensure_stream()
    proxy = LosingAnswers(js, lose, before)
    return EventStore(proxy, retry_pause=0.01)  # type: ignore[arg-type]


async def test_an_append_whose_answer_was_lost_is_stored_once_and_reported_stored(
    js: JetStreamContext,
) -> None:
    store = await store_over(js, lose=1, before="stored")
    result = await store.append(SUBJECT, [logged_in("100", "e1")], 0)
    assert [s.event.event_id for s in result.stored] == ["e1"]
    events, seq = await EventStore(js).load(SUBJECT)
    assert [e.event_id for e in events] == ["e1"]
    assert result.last_seq == seq
    assert store.retries == 1


async def test_an_unanswered_append_that_was_not_stored_is_stored_by_the_next_attempt(
    js: JetStreamContext,
) -> None:
    store = await store_over(js, lose=2, before="nothing")
    result = await store.append(SUBJECT, [logged_in("100", "e1")], 0)
    assert [s.event.event_id for s in result.stored] == ["e1"]
    assert [e.event_id for e in (await EventStore(js).load(SUBJECT))[0]] == ["e1"]
    assert store.retries == 2


async def test_a_subject_moved_on_by_someone_else_meanwhile_is_still_a_conflict(
    js: JetStreamContext,
) -> None:
    store = await store_over(js, lose=1, before="someone else")
    with pytest.raises(ConcurrencyConflict):
        await store.append(SUBJECT, [logged_in("100", "e1")], 0)
    events, _ = await EventStore(js).load(SUBJECT)
    assert [e.event_id for e in events] == ["other-1"]


async def test_an_append_never_answered_fails_with_the_timeout_after_its_attempts(
    js: JetStreamContext,
) -> None:
    store = await store_over(js, lose=99, before="nothing")
    with pytest.raises(TimeoutError):
        await store.append(SUBJECT, [logged_in("100", "e1")], 0)
    assert store.retries == store.publish_attempts - 1
    assert await EventStore(js).load(SUBJECT) == ([], 0)


def test_at_least_one_attempt_is_made(js: JetStreamContext) -> None:
    with pytest.raises(ValueError, match="publish_attempts"):
        EventStore(js, publish_attempts=0)


class PausingServer:
    """The real JetStream context; the first publish of the login under test is sent
    to a server that was just paused (SIGSTOP) and is resumed ``pause`` seconds later,
    longer than the client waits for an answer."""

    def __init__(self, js: JetStreamContext, server: NatsServer, pause: float) -> None:
        self.js = js
        self.server = server
        self.pause = pause
        self.armed = False
        self.resumed: asyncio.Task[None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)

    async def _resume_later(self) -> None:
        await asyncio.sleep(self.pause)
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGCONT)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> js_api.PubAck:
        if self.armed:
            self.armed = False
            assert self.server.proc is not None
            self.server.proc.send_signal(signal.SIGSTOP)
            self.resumed = asyncio.create_task(self._resume_later())
        return await self.js.publish(subject, payload, headers=headers)


async def test_a_login_whose_publish_meets_a_paused_server_is_stored_once_when_it_resumes(
    own_nats_server: NatsServer,
) -> None:
    """The real thing: the server stops answering (SIGSTOP) just as a login publishes;
    the client's publish times out, the server stores it when it resumes, and the retry
    finds it there rather than storing it again or refusing it as a conflict."""
    nc = await nats.connect(own_nats_server.url)
    try:
        js = nc.jetstream(timeout=0.3)
        await EventStore(js).ensure_stream()
        pausing = PausingServer(js, own_nats_server, pause=0.8)
        store = EventStore(pausing, publish_attempts=8, retry_pause=0.2)  # type: ignore[arg-type]
        ledger = Ledger(store)
        await ledger.execute(log_in("HD0002", "300"))  # the stream is up and answering

        pausing.armed = True
        events = await ledger.execute(log_in("HD0001", "100"))
        assert pausing.resumed is not None
        await pausing.resumed
        assert [(type(e).__name__, e.user) for e in events] == [("LoggedIn", "100")]
        stored, _ = await EventStore(js).load(SUBJECT)
        assert [(type(e).__name__, e.user) for e in stored] == [("LoggedIn", "100")]
        assert store.retries >= 1
        info = await js.stream_info(store.stream)
        assert info.state.messages == 2  # HD0002's login and HD0001's, nothing twice
    finally:
        await nc.close()
