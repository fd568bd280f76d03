"""An event this build cannot decode affects its own aggregate only, never every login."""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event, encode_event
from hotdesk_contracts.events import Cause, LoggedIn
from hotdesk_ledger.errors import DeskStateUnknown
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from tests.ledger.factories import T0, at, log_in


def logged_in_json(desk: str, user: str, event_id: str, **extra: object) -> bytes:
    event = LoggedIn(
        event_id=event_id,
        at=T0,
        cause=Cause(actor=f"user:{user}"),
        correlation_id=event_id,
        desk=desk,
        user=user,
    )
    raw = json.loads(encode_event(event))
    raw.update(extra)
    return json.dumps(raw).encode()


def test_the_codec_refuses_a_version_newer_than_it_knows() -> None:
    with pytest.raises(EventDecodeError, match="version 2"):
        decode_event(logged_in_json("HD0001", "100", "e1", version=2))


def test_the_codec_refuses_an_enum_value_it_does_not_know() -> None:
    raw = json.loads(logged_in_json("HD0001", "100", "e1"))
    raw.update(type="LoggedOut", reason="teleported")
    with pytest.raises(EventDecodeError):
        decode_event(json.dumps(raw).encode())


async def published_unreadable(js: JetStreamContext) -> tuple[Ledger, EventStore]:
    store = EventStore(js)
    await store.ensure_stream()
    ledger = Ledger(store)
    await ledger.execute(log_in("HD0001", "100", now=at(0)))
    # What a newer build might write during a rolling upgrade.
    await js.publish(
        subjects.desk_ledger("HD0002"), logged_in_json("HD0002", "200", "new", version=2)
    )
    return ledger, store


async def test_logins_elsewhere_still_work_when_one_desk_holds_an_unreadable_event(
    js: JetStreamContext,
) -> None:
    ledger, _ = await published_unreadable(js)
    await ledger.execute(log_in("HD0003", "100", now=at(1)))
    seats = await ledger.seats()
    assert seats["HD0003"].user == "100"
    assert seats["HD0001"].user is None
    assert seats["HD0002"].unknown
    assert seats["HD0002"].user is None


async def test_a_login_at_a_desk_whose_last_event_is_unreadable_is_refused_with_a_typed_error(
    js: JetStreamContext,
) -> None:
    ledger, _ = await published_unreadable(js)
    state = await ledger.desk("HD0002")
    assert state.unknown
    assert state.last_seq > 0
    with pytest.raises(DeskStateUnknown) as err:
        await ledger.execute(log_in("HD0002", "300", now=at(1)))
    assert err.value.code == "desk_state_unknown"


async def test_load_skips_an_unreadable_event_and_keeps_the_rest(js: JetStreamContext) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    subject = subjects.desk_ledger("HD0004")
    await js.publish(subject, logged_in_json("HD0004", "100", "a"))
    await js.publish(subject, logged_in_json("HD0004", "200", "b", version=9))
    events, seq = await store.load(subject)
    assert [e.event_id for e in events] == ["a"]
    assert seq == 1
