"""BLF read-model values become dialog-info NOTIFYs, from a real JetStream KV bucket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.kv import KeyValue

from hotdesk_contracts import streams
from hotdesk_contracts.messages import CallPhase, CallStateChanged
from hotdesk_presence.projections.blf import BlfStates
from hotdesk_presence.projections.bus import BusStored
from hotdesk_sip_edge.blf.dialog_info import Participant, parse
from hotdesk_sip_edge.blf.subscriptions import NotifyToSend, SubscribeRequest, Subscriptions
from hotdesk_sip_edge.blf.watch import (
    BlfValueError,
    BlfWatch,
    dialog_id,
    expire_subscriptions,
    read_model_dialogs,
)

DOMAIN = "pbx.example.com"
AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _presence_value(*phases: CallPhase, key: str = "100") -> bytes:
    """What presence's BLF projection stores for ``key`` after a call from 100 to 101
    went through ``phases`` (built with presence's own fold, so the shapes agree)."""
    fold = BlfStates()
    state = None
    for seq, phase in enumerate(phases, 1):
        event = CallStateChanged(
            at=AT,
            origin="edge-1",
            call_id="call-1@edge",
            phase=phase,
            caller="100",
            callee="101",
            caller_desk="HD0001",
            from_tag="ft",
            to_tag="tt" if phase is not CallPhase.TRYING else "",
        )
        state = fold.apply(key, state, event, seq)
    return msgspec.json.encode(BusStored(applied={"HOTDESK_EDGE": len(phases)}, value=state))


def test_a_ringing_call_shows_as_early_with_tags_direction_and_both_parties() -> None:
    caller = read_model_dialogs(_presence_value(CallPhase.TRYING, CallPhase.RINGING), DOMAIN)
    callee = read_model_dialogs(
        _presence_value(CallPhase.TRYING, CallPhase.RINGING, key="101"), DOMAIN
    )
    (mine,) = caller
    assert (mine.state, mine.direction, mine.call_id, mine.local_tag, mine.remote_tag) == (
        "early",
        "initiator",
        "call-1@edge",
        "ft",
        "tt",
    )
    assert mine.local == Participant(
        identity="sip:100@pbx.example.com", target="sip:100@pbx.example.com"
    )
    assert mine.remote == Participant(
        identity="sip:101@pbx.example.com", target="sip:101@pbx.example.com"
    )
    (theirs,) = callee
    assert (theirs.direction, theirs.local_tag, theirs.remote_tag) == ("recipient", "tt", "ft")
    assert mine.id != theirs.id


def test_dialog_id_is_stable_across_phases_of_one_call() -> None:
    ringing = read_model_dialogs(_presence_value(CallPhase.RINGING), DOMAIN)
    answered = read_model_dialogs(_presence_value(CallPhase.RINGING, CallPhase.ANSWERED), DOMAIN)
    assert ringing[0].id == answered[0].id == dialog_id("call-1@edge", "ft")
    assert answered[0].state == "confirmed"


def test_a_call_that_just_ended_shows_as_that_dialog_terminated() -> None:
    (ended,) = read_model_dialogs(
        _presence_value(CallPhase.RINGING, CallPhase.ANSWERED, CallPhase.ENDED), DOMAIN
    )
    assert (ended.state, ended.call_id, ended.direction) == (
        "terminated",
        "call-1@edge",
        "initiator",
    )


def test_an_extension_without_calls_has_no_dialogs() -> None:
    assert read_model_dialogs(b'{"applied": {}, "value": {"ext": "100"}}', DOMAIN) == []
    assert read_model_dialogs(b'{"applied": {}, "value": null}', DOMAIN) == []


@pytest.mark.parametrize(
    "data",
    [b"not json", b'{"value": {"ext": "100", "state": "ringing"}}', b'{"value": 3}'],
)
def test_values_of_another_shape_are_refused(data: bytes) -> None:
    with pytest.raises(BlfValueError, match="not understood"):
        read_model_dialogs(data, DOMAIN)


# --- against nats-server -------------------------------------------------------------


def _subscribe(subs: Subscriptions, ext: str) -> NotifyToSend:
    outcome = subs.subscribe(
        SubscribeRequest(
            call_id=f"watch-{ext}@HD0002",
            from_tag="ft",
            to_tag=None,
            cseq=1,
            event="dialog",
            extension=ext,
            entity_uri=f"sip:{ext}@{DOMAIN}",
            from_uri=f"sip:HD0002@{DOMAIN}",
            to_uri=f"sip:{ext}@{DOMAIN}",
            contact="sip:HD0002@127.0.0.1:5070",
            authenticated=True,
            expires=600,
        ),
        now=0,
    )
    assert outcome.notify is not None
    return outcome.notify


@pytest.fixture
async def bucket(js: JetStreamContext) -> KeyValue:
    return await js.create_key_value(js_api.KeyValueConfig(bucket=streams.BLF.bucket))


class _Running:
    def __init__(self, watch: BlfWatch, sent: asyncio.Queue[NotifyToSend]) -> None:
        self.watch = watch
        self.sent = sent

    async def next(self) -> NotifyToSend:
        return await asyncio.wait_for(self.sent.get(), 10)


@pytest.fixture
async def subs() -> Subscriptions:
    return Subscriptions(["100", "101"], new_tag=lambda: "edge-tag")


@pytest.fixture
async def running(
    js: JetStreamContext, bucket: KeyValue, subs: Subscriptions
) -> AsyncIterator[_Running]:
    sent: asyncio.Queue[NotifyToSend] = asyncio.Queue()
    watch = BlfWatch(js, subs, sent.put, domain=DOMAIN, clock=lambda: 1.0, poll=0.2)
    stopping = asyncio.Event()
    task = asyncio.create_task(watch.run(stopping))
    await asyncio.wait_for(watch.ready.wait(), 10)
    yield _Running(watch, sent)
    stopping.set()
    await asyncio.wait_for(task, 10)


async def test_a_blf_value_put_in_the_bucket_is_notified_to_the_watchers(
    bucket: KeyValue, subs: Subscriptions, running: _Running
) -> None:
    initial = _subscribe(subs, "100")
    await bucket.put("100", _presence_value(CallPhase.RINGING, CallPhase.ANSWERED))
    notify = await running.next()
    assert notify.subscription.key == initial.subscription.key
    assert (notify.version, notify.cseq) == (1, 2)
    assert notify.subscription_state == "active;expires=599"
    info = parse(notify.body)
    assert (info.entity, info.version, info.state) == ("sip:100@pbx.example.com", 1, "full")
    (dialog,) = info.dialogs
    assert (dialog.state, dialog.call_id, dialog.direction) == (
        "confirmed",
        "call-1@edge",
        "initiator",
    )


async def test_each_change_gets_the_next_version_and_a_delete_shows_idle(
    bucket: KeyValue, subs: Subscriptions, running: _Running
) -> None:
    _subscribe(subs, "100")
    await bucket.put("100", _presence_value(CallPhase.RINGING))
    await bucket.put("100", _presence_value(CallPhase.RINGING, CallPhase.ANSWERED))
    await bucket.delete("100")
    states = []
    for version in (1, 2, 3):
        notify = await running.next()
        assert parse(notify.body).version == notify.version == version
        states.append([d.state for d in parse(notify.body).dialogs])
    assert states == [["early"], ["confirmed"], ["terminated"]]
    assert parse(notify.body).dialogs[0].call_id == ""


async def test_changes_to_unwatched_extensions_send_nothing_and_a_bad_value_is_skipped(
    bucket: KeyValue, subs: Subscriptions, running: _Running
) -> None:
    _subscribe(subs, "100")
    await bucket.put("101", _presence_value(CallPhase.RINGING, key="101"))
    await bucket.put("100", b"garbage")
    await bucket.put("100", _presence_value(CallPhase.RINGING))
    notify = await running.next()
    assert notify.version == 1
    assert [d.state for d in parse(notify.body).dialogs] == ["early"]
    assert running.sent.empty()


async def test_values_already_in_the_bucket_are_the_state_new_subscribers_see(
    js: JetStreamContext, bucket: KeyValue, subs: Subscriptions
) -> None:
    await bucket.put("101", _presence_value(CallPhase.RINGING, key="101"))
    watch = BlfWatch(js, subs, lambda _n: asyncio.sleep(0), domain=DOMAIN, poll=0.2)
    stopping = asyncio.Event()
    task = asyncio.create_task(watch.run(stopping))
    try:
        await asyncio.wait_for(watch.ready.wait(), 10)
        initial = _subscribe(subs, "101")
        (dialog,) = parse(initial.body).dialogs
        assert (dialog.state, dialog.direction) == ("early", "recipient")
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)


async def test_a_failing_send_does_not_stop_the_watch(
    js: JetStreamContext, bucket: KeyValue, subs: Subscriptions
) -> None:
    _subscribe(subs, "100")
    delivered: asyncio.Queue[int] = asyncio.Queue()

    async def flaky(notify: NotifyToSend) -> None:
        if notify.version == 1:
            raise ConnectionResetError("phone gone")
        await delivered.put(notify.version)

    watch = BlfWatch(js, subs, flaky, domain=DOMAIN, clock=lambda: 1.0, poll=0.2)
    stopping = asyncio.Event()
    task = asyncio.create_task(watch.run(stopping))
    try:
        await asyncio.wait_for(watch.ready.wait(), 10)
        await bucket.put("100", _presence_value(CallPhase.RINGING))
        await bucket.put("100", _presence_value(CallPhase.RINGING, CallPhase.ANSWERED))
        assert await asyncio.wait_for(delivered.get(), 10) == 2
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)


async def test_the_expiry_loop_sends_final_notifies_and_stops_when_asked() -> None:
    subs = Subscriptions(["100"])
    _subscribe(subs, "100")  # expires at 600
    clock = iter([599.0, 600.0])
    finals: asyncio.Queue[NotifyToSend] = asyncio.Queue()
    stopping = asyncio.Event()
    task = asyncio.create_task(
        expire_subscriptions(
            subs, finals.put, stopping, every=0.01, clock=lambda: next(clock, 601.0)
        )
    )
    final = await asyncio.wait_for(finals.get(), 10)
    stopping.set()
    await asyncio.wait_for(task, 10)
    assert final.subscription_state == "terminated;reason=timeout"
    assert len(subs) == 0
    assert finals.empty()


async def test_a_fan_out_lets_the_loop_turn_every_32_notifies_or_96_while_answers_fit(
    js: JetStreamContext,
) -> None:
    subs = Subscriptions(["100"])
    for n in range(300):
        request = SubscribeRequest(
            call_id=f"fan-{n}@HD0002",
            from_tag="ft",
            to_tag=None,
            cseq=1,
            event="dialog",
            extension="100",
            entity_uri=f"sip:100@{DOMAIN}",
            from_uri=f"sip:HD0002@{DOMAIN}",
            to_uri=f"sip:100@{DOMAIN}",
            contact="sip:HD0002@127.0.0.1:5070",
            authenticated=True,
            expires=600,
        )
        assert subs.subscribe(request, now=0).status == 200
    sent = 0

    async def send(notify: NotifyToSend) -> None:
        nonlocal sent
        sent += 1

    # The socket holds the answers of the first 200 NOTIFYs, then has no room left.
    watch = BlfWatch(js, subs, send, domain=DOMAIN, clock=lambda: 1.0, room=lambda: sent < 200)
    loop = asyncio.get_running_loop()
    turns: list[int] = []
    done = False

    def turn() -> None:
        turns.append(sent)
        if not done:
            loop.call_soon(turn)

    loop.call_soon(turn)
    entry = KeyValue.Entry(
        bucket=streams.BLF.bucket,
        key="100",
        value=_presence_value(CallPhase.RINGING),
        revision=1,
        delta=None,
        created=None,
        operation=None,
    )
    notifies = await watch.apply(entry)
    done = True
    assert len(notifies) == sent == 300
    assert turns == [96, 192, 224, 256, 288]
