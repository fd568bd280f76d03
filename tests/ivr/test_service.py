"""The IVR service and the edge's IVR bridge together on a real nats-server, with a
Python RTP peer in the phone's place: prompts, DTMF from the sip-tester captures, the
ledger's events, and two IVR replicas sharing calls."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import nats
import pytest
from argon2 import PasswordHasher
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.commands import EdgeCommand, LogIn, PlayPrompts, StopPlayback
from hotdesk_contracts.commands import HangUp as HangUpCommand
from hotdesk_contracts.directory import Config, Desk, Extension, Policies
from hotdesk_contracts.events import (
    Cause,
    LedgerEvent,
    LoggedIn,
    LoggedOut,
    LogoutReason,
    PinLockedOut,
    PinRejected,
    Roamed,
)
from hotdesk_contracts.messages import CallEnded, FeatureDialled, PromptsPlayed
from hotdesk_ivr import main as ivr_main
from hotdesk_ivr.flows import spell_desk
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.context import ServiceContext
from hotdesk_sip_edge.media import g711
from hotdesk_sip_edge.media.ivr_bridge import IvrBridge, IvrCommandRouter
from tests.sip_edge.media.pcap import DTMF_CAPTURES, udp_datagrams
from tests.sip_edge.media.rtp_peer import RtpPeer

PIN = "1234"
PIN_HASH = PasswordHasher().hash(PIN)
EDGE = "edge-test"
PORTS = (32000, 32999)
NAMES = [
    "enter-pin",
    "pin-wrong",
    "locked-out",
    "unknown-extension",
    "login-not-allowed",
    "logged-in",
    "logged-out",
    "desk-not-in-use",
    "logged-in-elsewhere",
    "press-1-to-move",
    "desk-busy",
    "goodbye",
    "error",
    "letter-h",
    "letter-d",
    *(f"digit-{d}" for d in range(10)),
]
# Each prompt is 100 ms of one constant sample, so its μ-law byte names it.
LEVELS = {f"en/{name}": 600 + 300 * i for i, name in enumerate(NAMES)}
PROMPT_AUDIO = {pid: struct.pack("<h", level) * 800 for pid, level in LEVELS.items()}
BY_CODE = {g711.ulaw_encode(struct.pack("<h", level))[0]: pid for pid, level in LEVELS.items()}


def config(**policies: object) -> Config:
    return Config(
        extensions=[
            Extension(number="100", name="Ann", pin_hash=PIN_HASH),
            Extension(number="101", name="Bo", pin_hash=PIN_HASH),
        ],
        desks=[
            Desk(name="HD0001", mac="001565000001", sip_password="a"),
            Desk(name="HD0002", mac="001565000002", sip_password="b"),
        ],
        policies=Policies(**policies),  # type: ignore[arg-type]
    )


class DictPrompts:
    async def get(self, prompt_id: str) -> bytes | None:
        return PROMPT_AUDIO.get(prompt_id)


@dataclass
class Phone:
    """An answered IVR call: the bridge, the RTP peer, and what the phone heard."""

    bridge: IvrBridge
    peer: RtpPeer
    bye: asyncio.Event
    heard: list[str] = field(default_factory=list)

    async def listen(self) -> None:
        while True:
            got = await self.peer.received.get()
            prompt = BY_CODE.get(got.packet.payload[0])
            if prompt is None:
                continue  # the silence sent before a BYE
            if not self.heard or self.heard[-1] != prompt or got.packet.marker:
                self.heard.append(prompt)

    async def hear(self, prompt: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while prompt not in self.heard:
                await asyncio.sleep(0.01)

    async def press(self, digits: str) -> None:
        assert self.bridge.media is not None
        port = self.bridge.media.local_port
        for digit in digits:
            for datagram in udp_datagrams(DTMF_CAPTURES[digit]):
                self.peer.send(datagram.payload, port)
                await asyncio.sleep(0.001)

    async def hung_up(self, timeout: float = 15.0) -> None:
        await asyncio.wait_for(self.bye.wait(), timeout)


@pytest.fixture
async def router(nc: Client) -> AsyncIterator[IvrCommandRouter]:
    r = IvrCommandRouter(nc, EDGE)
    await r.start()
    yield r
    for bridge in list(r.bridges.values()):
        await bridge.on_bye()
    await r.close()


async def run_ivr(nc: Client, js: JetStreamContext, cfg: Config, name: str) -> asyncio.Event:
    ctx = ServiceContext(
        name="ivr",
        instance_id=name,
        config=cfg,
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("ivr-test"),
    )
    task = asyncio.create_task(ivr_main.serve(ctx))
    RUNNING.append((ctx, task))
    return ctx.stopping


RUNNING: list[tuple[ServiceContext, asyncio.Task[None]]] = []


@pytest.fixture
async def ivr(nc: Client, js: JetStreamContext) -> AsyncIterator[None]:
    yield None
    while RUNNING:
        ctx, task = RUNNING.pop()
        ctx.stopping.set()
        await asyncio.wait_for(task, 45)  # an IVR drains its calls for up to 20 s


async def wait_ivr_ready(nc: Client) -> None:
    """Until every IVR started here says it is ready (prompts installed, the dial
    queue subscribed and bound at the server), as its ``/readyz`` would."""
    async with asyncio.timeout(60):
        while not all(ctx.readiness() and ctx.ready for ctx, _ in RUNNING):
            await asyncio.sleep(0.01)
    await nc.flush()


_calls = 0


async def call(
    nc: Client,
    router: IvrCommandRouter,
    dialled: str,
    *,
    caller: str = "HD0001",
    via_key: bool = False,
    call_id: str | None = None,
) -> Phone:
    global _calls
    _calls += 1
    peer = await RtpPeer().start()
    bye = asyncio.Event()
    bridge = await IvrBridge.answer_call(
        nc=nc,
        edge_id=EDGE,
        call_id=call_id or f"call-{_calls}@127.0.0.1",
        send_bye=bye.set,
        offer=peer.offer(),
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts(),
        media_timeout=30.0,
    )
    router.add(bridge)
    phone = Phone(bridge, peer, bye)
    listener = asyncio.create_task(phone.listen())
    bye_wait = asyncio.create_task(bye.wait())

    def hung_up(_: object) -> None:
        listener.cancel()
        peer.close()

    bye_wait.add_done_callback(hung_up)
    if dialled == "*77*5*":
        feature, argument = "logout", ""
    else:
        feature, argument = "login", dialled.strip("*").split("*")[1]
    await bridge.start(
        caller=caller, dialled=dialled, feature=feature, argument=argument, via_key=via_key
    )
    return phone


async def ledger_events(js: JetStreamContext, subject: str) -> list[LedgerEvent]:
    events, _ = await EventStore(js).load(subject)
    return events


async def test_login_with_the_right_pin_seats_the_user_and_hangs_up(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await run_ivr(nc, js, config(), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*100*")
    await phone.hear("en/enter-pin")
    await phone.press(PIN + "#")
    await phone.hung_up()
    assert phone.heard == ["en/enter-pin", "en/logged-in"]
    events = await ledger_events(js, subjects.desk_ledger("HD0001"))
    assert [(type(e), e.user) for e in events] == [(LoggedIn, "100")]
    assert events[0].cause.call_id == phone.bridge.call_id


async def test_three_wrong_pins_are_recorded_and_end_the_call(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await run_ivr(nc, js, config(), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*100*")
    for attempt in range(3):
        await phone.hear("en/enter-pin")
        await asyncio.sleep(0.3)  # the same capture again must look like a new key press
        await phone.press("9#")
        if attempt < 2:
            await phone.hear("en/pin-wrong")
            phone.heard.clear()
    await phone.hung_up()
    assert phone.heard[-2:] == ["en/pin-wrong", "en/goodbye"]
    user_events = await ledger_events(js, subjects.user_ledger("100"))
    assert [type(e) for e in user_events] == [PinRejected] * 3
    assert await ledger_events(js, subjects.desk_ledger("HD0001")) == []


async def test_wrong_pins_across_calls_lock_the_user_out(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await run_ivr(nc, js, config(pin_max_failures=2), "ivr-1")
    await wait_ivr_ready(nc)
    first = await call(nc, router, "*77*100*")
    await first.hear("en/enter-pin")
    await first.press("9#")
    await first.hear("en/pin-wrong")
    await first.bridge.on_bye()
    second = await call(nc, router, "*77*100*")
    await second.hear("en/enter-pin")
    await second.press("8#")
    await second.hung_up()
    assert second.heard == ["en/enter-pin", "en/pin-wrong", "en/locked-out"]
    third = await call(nc, router, "*77*100*")
    await third.hear("en/enter-pin")
    await third.press(PIN + "#")  # the right PIN, but the lockout holds: not even checked
    await third.hung_up()
    assert third.heard == ["en/enter-pin", "en/locked-out"]
    user_events = await ledger_events(js, subjects.user_ledger("100"))
    assert [type(e) for e in user_events] == [PinRejected, PinRejected, PinLockedOut]


async def seat(js: JetStreamContext, desk: str, user: str) -> None:
    ledger = Ledger(EventStore(js))
    await ledger.store.ensure_stream()
    await ledger.execute(
        LogIn(
            command_id=f"seed-{desk}-{user}",
            at=datetime.now(UTC),
            cause=Cause(actor="test"),
            correlation_id="seed",
            desk=desk,
            user=user,
        )
    )


async def test_logging_in_on_an_occupied_desk_roams_it(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await seat(js, "HD0001", "101")
    await run_ivr(nc, js, config(), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*100*")
    await phone.hear("en/enter-pin")
    await phone.press(PIN + "#")
    await phone.hung_up()
    events = await ledger_events(js, subjects.desk_ledger("HD0001"))
    assert isinstance(events[-1], Roamed)
    assert (events[-1].from_user, events[-1].user) == ("101", "100")


async def test_a_user_seated_elsewhere_presses_1_and_moves_here(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await seat(js, "HD0002", "100")
    await run_ivr(nc, js, config(), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*100*")
    await phone.hear("en/enter-pin")
    await phone.press(PIN + "#")
    await phone.hear("en/press-1-to-move")
    expected = [
        "en/enter-pin",
        "en/logged-in-elsewhere",
        *(f"en/{p}" for p in spell_desk("HD0002")),
        "en/press-1-to-move",
    ]
    assert phone.heard == [p for i, p in enumerate(expected) if i == 0 or expected[i - 1] != p]
    await asyncio.sleep(0.3)  # "1" again, from the same capture: a new key press
    await phone.press("1")
    await phone.hung_up()
    assert phone.heard[-1] == "en/logged-in"
    here = await ledger_events(js, subjects.desk_ledger("HD0001"))
    there = await ledger_events(js, subjects.desk_ledger("HD0002"))
    assert [type(e) for e in here] == [LoggedIn]
    assert isinstance(there[-1], LoggedOut)
    assert there[-1].reason is LogoutReason.ELSEWHERE


async def test_logout_by_code_and_from_an_idle_desk(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await seat(js, "HD0001", "100")
    await run_ivr(nc, js, config(), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*5*")
    await phone.hung_up()
    assert phone.heard == ["en/logged-out"]
    events = await ledger_events(js, subjects.desk_ledger("HD0001"))
    assert isinstance(events[-1], LoggedOut)
    assert events[-1].reason is LogoutReason.USER_CODE
    again = await call(nc, router, "*77*5*")
    await again.hung_up()
    assert again.heard == ["en/desk-not-in-use"]
    assert len(await ledger_events(js, subjects.desk_ledger("HD0001"))) == len(events)


async def test_sip_info_digits_work_like_rfc4733_ones(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await run_ivr(nc, js, config(), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*101*", caller="HD0002")
    await phone.hear("en/enter-pin")
    for digit in PIN + "#":
        phone.bridge.on_info("application/dtmf-relay", f"Signal={digit}\r\nDuration=160".encode())
    await phone.hung_up()
    assert phone.heard[-1] == "en/logged-in"
    assert [type(e) for e in await ledger_events(js, subjects.desk_ledger("HD0002"))] == [LoggedIn]


async def test_two_ivr_replicas_claim_each_call_exactly_once(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    plays: list[PlayPrompts] = []

    async def spy(msg: Msg) -> None:
        command = msgspec.json.decode(msg.data)
        if command.get("type") == "PlayPrompts":
            plays.append(msgspec.convert(command, PlayPrompts))

    await nc.subscribe(subjects.edge_command(EDGE), cb=spy)
    await run_ivr(nc, js, config(), "ivr-1")
    await run_ivr(nc, js, config(), "ivr-2")
    await wait_ivr_ready(nc)
    phones = [await call(nc, router, "*77*5*", caller=f"HD000{1 + i % 2}") for i in range(6)]
    for phone in phones:
        await phone.hung_up()
        assert phone.heard == ["en/desk-not-in-use"]
    per_call = [p.call_id for p in plays]
    assert sorted(per_call) == sorted(p.bridge.call_id for p in phones)


async def test_a_call_no_ivr_claims_hears_the_error_prompt_and_is_hung_up(
    nc: Client, router: IvrCommandRouter
) -> None:
    peer = await RtpPeer().start()
    bye = asyncio.Event()
    ended: list[CallEnded] = []

    async def on_ended(msg: Msg) -> None:
        ended.append(msgspec.json.decode(msg.data, type=CallEnded))

    bridge = await IvrBridge.answer_call(
        nc=nc,
        edge_id=EDGE,
        call_id="lonely",
        send_bye=bye.set,
        offer=peer.offer(),
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts(),
        media_timeout=30.0,
        claim_timeout=0.2,
    )
    await nc.subscribe(subjects.edge_call_event("lonely", "ended"), cb=on_ended)
    router.add(bridge)
    await bridge.start(caller="HD0001", dialled="*77*100*", feature="login", argument="100")
    await asyncio.wait_for(bye.wait(), 10)
    received = await peer.next()
    assert BY_CODE[received.packet.payload[0]] == "en/error"
    await nc.flush()
    for _ in range(100):
        if ended:
            break
        await asyncio.sleep(0.01)
    assert [e.reason for e in ended] == ["hangup"]
    assert "lonely" not in router.bridges
    peer.close()


async def test_media_that_stops_hangs_the_call_up_and_tells_the_ivr(nc: Client) -> None:
    peer = await RtpPeer().start()
    bye = asyncio.Event()
    ended: list[CallEnded] = []

    async def on_ended(msg: Msg) -> None:
        ended.append(msgspec.json.decode(msg.data, type=CallEnded))

    await nc.subscribe(subjects.edge_call_event("quiet", "ended"), cb=on_ended)
    bridge = await IvrBridge.answer_call(
        nc=nc,
        edge_id=EDGE,
        call_id="quiet",
        send_bye=bye.set,
        offer=peer.offer(),
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts(),
        media_timeout=0.2,
    )
    await asyncio.wait_for(bye.wait(), 10)
    await nc.flush()
    for _ in range(100):
        if ended:
            break
        await asyncio.sleep(0.01)
    assert [e.reason for e in ended] == ["media-timeout"]
    assert bridge.ended == "media-timeout"
    peer.close()


async def test_an_ivr_call_that_lasts_too_long_is_hung_up(
    nc: Client, router: IvrCommandRouter
) -> None:
    peer = await RtpPeer().start()
    bye = asyncio.Event()
    bridge = await IvrBridge.answer_call(
        nc=nc,
        edge_id=EDGE,
        call_id="endless",
        send_bye=bye.set,
        offer=peer.offer(),
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts(),
        media_timeout=30.0,
        max_call_seconds=0.3,
    )
    router.add(bridge)
    await bridge.start(caller="HD0001", dialled="*77*5*", feature="logout")
    await bridge.command(PlayPrompts(call_id="endless", prompts=[]))  # claimed, then silence
    await asyncio.wait_for(bye.wait(), 10)
    assert bridge.ended == "hangup"
    peer.close()


class BrokenLedger:
    async def desk(self, desk: str) -> object:
        raise ConnectionError("the ledger is unreachable")


async def test_a_failing_ledger_plays_the_error_prompt_and_hangs_up(
    nc: Client, router: IvrCommandRouter
) -> None:
    ivr = ivr_main.Ivr(nc, BrokenLedger(), lambda: config().directory())  # type: ignore[arg-type]
    await ivr.start()
    try:
        await nc.flush()
        phone = await call(nc, router, "*77*100*")
        await phone.hear("en/enter-pin")
        await phone.press(PIN + "#")
        await phone.hung_up()
        assert phone.heard == ["en/enter-pin", "en/error"]
    finally:
        await ivr.close()


class TimingOutLedger:
    async def desk(self, desk: str) -> object:
        # What a read gets while the ledger stream elects a new leader.
        raise nats.errors.TimeoutError


async def test_a_ledger_read_timing_out_is_told_to_the_caller_by_the_ivr(
    nc: Client, router: IvrCommandRouter
) -> None:
    """A NATS timeout inside the call is a failure of the call, not the call outliving
    the IVR's limit: the IVR plays the error prompt and hangs up itself."""
    commands: list[EdgeCommand] = []

    async def on_command(msg: Msg) -> None:
        commands.append(msgspec.json.decode(msg.data, type=EdgeCommand))

    sub = await nc.subscribe(subjects.edge_command(EDGE), cb=on_command)
    ivr = ivr_main.Ivr(nc, TimingOutLedger(), lambda: config().directory())  # type: ignore[arg-type]
    await ivr.start()
    try:
        await nc.flush()
        phone = await call(nc, router, "*77*100*")
        await phone.hear("en/enter-pin")
        await phone.press(PIN + "#")
        await phone.hung_up()
        assert phone.heard == ["en/enter-pin", "en/error"]
        call_id = phone.bridge.call_id
        said = [c for c in commands if isinstance(c, PlayPrompts) and c.call_id == call_id]
        assert said[-1].prompts == ["en/error"]
        assert any(isinstance(c, HangUpCommand) and c.call_id == call_id for c in commands)
    finally:
        await sub.unsubscribe()
        await ivr.close()


async def test_stop_and_hang_up_now_cut_prompts_short_and_report_them_unfinished(
    nc: Client, router: IvrCommandRouter
) -> None:
    played: list[PromptsPlayed] = []

    async def on_played(msg: Msg) -> None:
        played.append(msgspec.json.decode(msg.data, type=PromptsPlayed))

    await nc.subscribe(subjects.edge_call_event("cut", "played"), cb=on_played)
    peer = await RtpPeer().start()
    bye = asyncio.Event()
    bridge = await IvrBridge.answer_call(
        nc=nc,
        edge_id=EDGE,
        call_id="cut",
        send_bye=bye.set,
        offer=peer.offer(),
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts(),
        media_timeout=30.0,
    )
    router.add(bridge)
    await bridge.start(caller="HD0001", dialled="*77*5*", feature="logout")
    long_play = ["en/goodbye"] * 50  # five seconds
    await nc.publish(
        subjects.edge_command(EDGE),
        msgspec.json.encode(
            PlayPrompts(call_id="cut", prompts=long_play, play_id="a", barge_in=False)
        ),
    )
    await nc.publish(
        subjects.edge_command(EDGE),
        msgspec.json.encode(
            PlayPrompts(call_id="cut", prompts=long_play, play_id="b", barge_in=False)
        ),
    )
    await peer.next()
    await nc.publish(subjects.edge_command(EDGE), msgspec.json.encode(StopPlayback(call_id="cut")))
    async with asyncio.timeout(5):  # the playing prompt and the queued one both end
        while len(played) < 2:
            await asyncio.sleep(0.01)
    await nc.publish(
        subjects.edge_command(EDGE),
        msgspec.json.encode(
            PlayPrompts(call_id="cut", prompts=long_play, play_id="c", barge_in=False)
        ),
    )
    await nc.publish(
        subjects.edge_command(EDGE), msgspec.json.encode(HangUpCommand(call_id="cut", now=True))
    )
    await asyncio.wait_for(bye.wait(), 5)
    await nc.flush()
    async with asyncio.timeout(5):
        while len(played) < 3:
            await asyncio.sleep(0.01)
    assert sorted((p.play_id, p.completed) for p in played) == [
        ("a", False),
        ("b", False),
        ("c", False),
    ]
    peer.close()


async def test_an_event_of_another_call_on_the_calls_subject_is_ignored(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await run_ivr(nc, js, config(), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*100*")
    await phone.hear("en/enter-pin")
    forged = CallEnded(at=datetime.now(UTC), origin=EDGE, call_id="someone-else", reason="bye")
    await nc.publish(
        subjects.edge_call_event(phone.bridge.call_id, "ended"), msgspec.json.encode(forged)
    )
    await nc.flush()
    await asyncio.sleep(0.2)
    await phone.press(PIN + "#")
    await phone.hung_up()
    assert phone.heard[-1] == "en/logged-in"


async def test_a_desk_reusing_a_call_id_still_gets_locked_out_by_wrong_pins(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await run_ivr(nc, js, config(pin_max_failures=3), "ivr-1")
    await wait_ivr_ready(nc)
    for attempt in range(3):
        phone = await call(nc, router, "*77*100*", call_id="reused@127.0.0.1")
        await phone.hear("en/enter-pin")
        await phone.press("9#")
        if attempt < 2:
            await phone.hear("en/pin-wrong")
            await phone.bridge.on_bye()
    await phone.hung_up()
    assert phone.heard[-2:] == ["en/pin-wrong", "en/locked-out"]
    user_events = await ledger_events(js, subjects.user_ledger("100"))
    assert [type(e) for e in user_events] == [PinRejected] * 3 + [PinLockedOut]


@pytest.mark.parametrize("extension", ["100", "999"], ids=["known", "unknown"])
async def test_without_announcing_a_wrong_pin_sounds_the_same_for_known_and_unknown_extensions(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None, extension: str
) -> None:
    await run_ivr(nc, js, config(announce_unknown_extension=False), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, f"*77*{extension}*")
    await phone.hear("en/enter-pin")
    await phone.press("9#")
    async with asyncio.timeout(10):
        while len(phone.heard) < 3:
            await asyncio.sleep(0.01)
    await phone.bridge.on_bye()
    assert phone.heard == ["en/enter-pin", "en/pin-wrong", "en/enter-pin"]


async def test_an_unknown_extension_is_announced_and_the_call_ends(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await run_ivr(nc, js, config(), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*999*")
    await phone.hung_up()
    assert phone.heard == ["en/unknown-extension"]
    assert await ledger_events(js, subjects.desk_ledger("HD0001")) == []


def test_a_pin_checked_against_no_hash_is_never_right() -> None:
    assert ivr_main.verify_pin(PIN, PIN_HASH)
    assert not ivr_main.verify_pin(PIN, "")
    assert not ivr_main.verify_pin("", "")


async def test_a_new_dial_reusing_a_followed_calls_call_id_replaces_that_call(
    nc: Client,
) -> None:
    ivr = ivr_main.Ivr(nc, BrokenLedger(), lambda: config().directory())  # type: ignore[arg-type]
    await ivr.start()
    first = FeatureDialled(
        at=datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
        origin=EDGE,
        call_id="reused@127.0.0.1",
        caller="HD0001",
        dialled="*77*100*",
        feature="login",
        argument="100",
    )
    try:
        await nc.publish(subjects.edge_dial("HD0001"), msgspec.json.encode(first))
        async with asyncio.timeout(5):
            while first.call_id not in ivr.calls:
                await asyncio.sleep(0.01)
        old = ivr.calls[first.call_id]
        await nc.publish(subjects.edge_dial("HD0001"), msgspec.json.encode(first))
        await nc.flush()
        await asyncio.sleep(0.1)
        assert ivr.calls[first.call_id] is old  # the same dial event again: ignored
        second = msgspec.structs.replace(first, at=datetime(2026, 11, 25, 9, 1, tzinfo=UTC))
        await nc.publish(subjects.edge_dial("HD0001"), msgspec.json.encode(second))
        async with asyncio.timeout(5):
            while ivr.calls.get(first.call_id) is old:
                await asyncio.sleep(0.01)
        await asyncio.gather(old, return_exceptions=True)
        assert old.cancelled()
        assert not ivr.calls[first.call_id].done()
    finally:
        await ivr.close()


async def test_a_caller_the_ivr_stops_answering_hears_the_error_prompt_and_is_hung_up(
    nc: Client, router: IvrCommandRouter
) -> None:
    peer = await RtpPeer().start()
    bye = asyncio.Event()
    bridge = await IvrBridge.answer_call(
        nc=nc,
        edge_id=EDGE,
        call_id="abandoned",
        send_bye=bye.set,
        offer=peer.offer(),
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts(),
        media_timeout=30.0,
        ivr_silence_seconds=0.5,
    )
    phone = Phone(bridge, peer, bye)
    listener = asyncio.create_task(phone.listen())
    router.add(bridge)
    try:
        await bridge.start(caller="HD0001", dialled="*77*100*", feature="login", argument="100")
        # The IVR claims the call, asks for the PIN, and is never heard of again.
        await bridge.command(PlayPrompts(call_id="abandoned", prompts=["en/enter-pin"]))
        await phone.hear("en/enter-pin")
        await phone.press("1")  # a key press restarts the wait, as it does the IVR's timer
        await asyncio.wait_for(bye.wait(), 10)
        assert phone.heard == ["en/enter-pin", "en/error"]
        assert bridge.ended == "hangup"
    finally:
        listener.cancel()
        peer.close()


async def test_an_ivr_that_keeps_commanding_is_not_hung_up_on(
    nc: Client, router: IvrCommandRouter
) -> None:
    peer = await RtpPeer().start()
    bye = asyncio.Event()
    bridge = await IvrBridge.answer_call(
        nc=nc,
        edge_id=EDGE,
        call_id="lively",
        send_bye=bye.set,
        offer=peer.offer(),
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts(),
        media_timeout=30.0,
        ivr_silence_seconds=0.5,
    )
    phone = Phone(bridge, peer, bye)
    listener = asyncio.create_task(phone.listen())
    router.add(bridge)
    try:
        await bridge.start(caller="HD0001", dialled="*77*100*", feature="login", argument="100")
        for _ in range(4):  # 100 ms prompts, a new command every 300 ms
            await bridge.command(PlayPrompts(call_id="lively", prompts=["en/enter-pin"]))
            await asyncio.sleep(0.3)
        assert not bye.is_set()
        assert "en/error" not in phone.heard
    finally:
        listener.cancel()
        await bridge.on_bye()
        peer.close()


async def test_the_ivr_carries_on_when_the_edge_never_reports_a_play_finished(
    nc: Client,
) -> None:
    commands: asyncio.Queue[object] = asyncio.Queue()

    async def edge_that_never_reports(msg: Msg) -> None:
        commands.put_nowait(msgspec.json.decode(msg.data, type=EdgeCommand))

    sub = await nc.subscribe(subjects.edge_command(EDGE), cb=edge_that_never_reports)
    cfg = config(pin_digit_timeout_seconds=0.2)
    ivr = ivr_main.Ivr(nc, BrokenLedger(), cfg.directory, play_guard_seconds=0.2)  # type: ignore[arg-type]
    await ivr.start()
    dialled = FeatureDialled(
        at=datetime.now(UTC),
        origin=EDGE,
        call_id="unreported@127.0.0.1",
        caller="HD0001",
        dialled="*77*100*",
        feature="login",
        argument="100",
    )
    try:
        await nc.publish(subjects.edge_dial("HD0001"), msgspec.json.encode(dialled))
        seen: list[object] = []
        async with asyncio.timeout(10):
            while not any(isinstance(c, HangUpCommand) for c in seen):
                seen.append(await commands.get())
        played = [c.prompts for c in seen if isinstance(c, PlayPrompts)]
        assert played[0] == ["en/enter-pin"]
        assert played[-1] == ["en/goodbye"]  # the tries ran out on the digit timer
    finally:
        await sub.unsubscribe()
        await ivr.close()
