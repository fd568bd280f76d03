"""BLF through the whole system: a digest-authenticated ``Event: dialog`` subscription
to user 100 sees a real call to 100 at the desk 100 logged in at (via SIPp through the
edge, presence folding the call states) go early, confirmed and terminated, with
strictly increasing versions; after 100 roams to another desk the lamp follows."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.directory import Config
from hotdesk_contracts.events import LoggedIn, LoggedOut
from tests.e2e.blf_watcher import BlfWatcher, lamp
from tests.e2e.sipp import Sipp, start_sipp
from tests.e2e.system import (
    DESK_PASSWORD,
    PINS,
    PRESENCE,
    SCENARIOS,
    System,
    running_system,
    sipp_desk_call,
)
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e

PHONE_101_PASSWORD = "phone-101-e2e"
CALL_CYCLE = ["terminated", "early", "confirmed", "terminated"]
"""A BLF lamp through one call: idle, ringing, talking, idle (repeats folded)."""


def phone_for_101(cfg: Config) -> Config:
    """User 101 also has a phone of their own (SIP password set)."""
    extensions = [
        msgspec.structs.replace(e, sip_password=PHONE_101_PASSWORD) if e.number == "101" else e
        for e in cfg.extensions
    ]
    return msgspec.structs.replace(cfg, extensions=extensions)


async def desk_phone(tmp: Path, name: str) -> Sipp:
    """A desk phone's SIP port, ready to take one call."""
    return await start_sipp(tmp, SCENARIOS / "answer_uas.xml", name=name, timeout_s=40)


async def call_100_from_101(system: System, tmp: Path, name: str, rtp: int) -> None:
    """101's own phone calls 100, which rings, answers, and is hung up on."""
    caller = await start_sipp(
        tmp,
        SCENARIOS / "call_user.xml",
        "-au",
        "101",
        "-ap",
        PHONE_101_PASSWORD,
        "-key",
        "caller",
        "101",
        "-key",
        "callee",
        "100",
        "-key",
        "rtp",
        str(rtp),
        name=name,
        remote=f"127.0.0.1:{system.sip_port}",
        timeout_s=20,
    )
    run = await caller.finish(25)
    assert run.returncode == 0, run.stderr[-2000:] + run.messages[-4000:]


async def test_blf_lamp_of_a_user_goes_early_confirmed_idle_and_follows_the_user_to_a_new_desk(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with (
            running_system(
                nc, js, (36300, 36399), extra=[PRESENCE], configure=phone_for_101
            ) as system,
            BlfWatcher(system.sip_port, "HD0002", DESK_PASSWORD) as watcher,
        ):
            subscribed = await watcher.subscribe("100")
            assert subscribed.status == 200, subscribed.status
            await watcher.wait_for("100", ["terminated"])

            first_desk = await desk_phone(tmp_path, "hd0001-phone")
            login = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0001",
                dial="*77*100*",
                digits=PINS["100"] + "#",
                rtp_listener=listener.port,
                name="login-hd0001",
                contact_port=first_desk.port,
            )
            assert login.returncode == 0, login.stderr[-2000:] + login.messages[-3000:]
            await call_100_from_101(system, tmp_path, "call-1", listener.port)
            answered = await first_desk.finish(10)
            assert answered.returncode == 0, answered.stderr[-2000:] + answered.messages[-3000:]
            await watcher.wait_for("100", CALL_CYCLE)
            at_first_desk = len(watcher.documents)

            # 100 sits down at HD0002: after the PIN they are told they are logged in
            # at HD0001 and press 1 to move.
            second_desk = await desk_phone(tmp_path, "hd0002-phone")
            roam = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0002",
                dial="*77*100*",
                digits=PINS["100"] + "#|1",
                rtp_listener=listener.port,
                name="login-hd0002",
                contact_port=second_desk.port,
            )
            assert roam.returncode == 0, roam.stderr[-2000:] + roam.messages[-3000:]
            assert isinstance((await system.desk_ledger("HD0002"))[-1], LoggedIn)
            assert isinstance((await system.desk_ledger("HD0001"))[-1], LoggedOut)
            await call_100_from_101(system, tmp_path, "call-2", listener.port)
            answered = await second_desk.finish(10)
            assert answered.returncode == 0, answered.stderr[-2000:] + answered.messages[-3000:]
            await watcher.wait_for("100", CALL_CYCLE + CALL_CYCLE[1:])
            documents = list(watcher.documents)
    finally:
        listener.close()

    # The second cycle is the call after the roam, answered at HD0002's phone.
    assert lamp(documents[at_first_desk - 1 :], "100") == CALL_CYCLE
    live = [d for doc in documents for d in doc.dialogs if d.state in ("early", "confirmed")]
    assert {d.direction for d in live} == {"recipient"}
    assert lamp(documents, "100") == CALL_CYCLE + CALL_CYCLE[1:]
    versions = [d.version for d in documents]
    assert versions == sorted(set(versions)), versions
    assert {d.entity.split("@")[0] for d in documents} == {"sip:100"}
