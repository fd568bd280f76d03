"""SIPp desks log in, out, roam and mistype their PIN through the real edge and IVR."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LoggedIn, LoggedOut, LogoutReason, PinRejected, Roamed
from tests.e2e.system import PINS, prompt_codes, running_system, sipp_desk_call
from tests.sip_edge.harness import seed_login
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e


async def test_desk_logs_in_through_the_edge_and_hears_the_pin_prompt(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with running_system(nc, js, (35000, 35099)) as system:
            run = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0001",
                dial="*77*100*",
                digits=PINS["100"] + "#",
                rtp_listener=listener.port,
            )
            assert run.returncode == 0, run.stderr[-2000:] + run.messages[-3000:]
            events = await system.desk_ledger("HD0001")
        assert [(type(e), e.user) for e in events] == [(LoggedIn, "100")]
        heard = []
        while not listener.received.empty():
            heard.append(listener.received.get_nowait().packet)
        assert heard
        assert heard[0].marker
        expected = prompt_codes("en/enter-pin")
        assert b"".join(p.payload for p in heard) == expected[: 160 * len(heard)]
    finally:
        listener.close()


async def test_desk_logs_in_over_tcp_with_sip_info_digits(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with running_system(nc, js, (35800, 35899)) as system:
            run = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0002",
                dial="*77*100*",
                digits=PINS["100"] + "#",
                rtp_listener=listener.port,
                info=True,
                transport="t1",
            )
            assert run.returncode == 0, run.stderr[-2000:] + run.messages[-3000:]
            events = await system.desk_ledger("HD0002")
        assert [(type(e), e.user) for e in events] == [(LoggedIn, "100")]
    finally:
        listener.close()


async def test_desk_logs_out_with_the_logout_code(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with running_system(nc, js, (35100, 35199)) as system:
            await seed_login(js, "HD0001", "100")
            logout = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0001",
                dial="*77*5*",
                digits="",
                rtp_listener=listener.port,
                name="logout",
            )
            assert logout.returncode == 0, logout.stderr[-2000:] + logout.messages[-3000:]
            events = await system.desk_ledger("HD0001")
        assert [type(e) for e in events] == [LoggedIn, LoggedOut]
        assert isinstance(events[1], LoggedOut)
        assert events[1].reason is LogoutReason.USER_CODE
    finally:
        listener.close()


async def test_logout_key_uri_marks_the_logout_as_by_key(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with running_system(nc, js, (35200, 35299), logout_key_uri="*77*5*") as system:
            await seed_login(js, "HD0002", "101")
            logout = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0002",
                dial="*77*5*",
                digits="",
                rtp_listener=listener.port,
                name="logout",
            )
            assert logout.returncode == 0, logout.stderr[-2000:]
            events = await system.desk_ledger("HD0002")
        assert [type(e) for e in events] == [LoggedIn, LoggedOut]
        assert isinstance(events[1], LoggedOut)
        assert events[1].reason is LogoutReason.USER_KEY
    finally:
        listener.close()


async def test_three_wrong_pins_are_three_rejections_and_no_login(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with running_system(nc, js, (35300, 35399)) as system:
            run = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0001",
                dial="*77*100*",
                digits="9999#|9999#|9999#",
                rtp_listener=listener.port,
            )
            assert run.returncode == 0, run.stderr[-2000:] + run.messages[-3000:]
            rejected = await system.ledger(subjects.user_ledger("100"))
            desk = await system.desk_ledger("HD0001")
        assert [type(e) for e in rejected] == [PinRejected] * 3
        assert desk == []
    finally:
        listener.close()


async def test_logging_in_as_another_user_roams_the_desk(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with running_system(nc, js, (35400, 35499)) as system:
            await seed_login(js, "HD0001", "100")
            second = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0001",
                dial="*77*101*",
                digits=PINS["101"] + "#",
                rtp_listener=listener.port,
                name="second",
            )
            assert second.returncode == 0, second.stderr[-2000:] + second.messages[-3000:]
            events = await system.desk_ledger("HD0001")
        assert [type(e) for e in events] == [LoggedIn, Roamed]
        assert isinstance(events[1], Roamed)
        assert (events[1].from_user, events[1].user) == ("100", "101")
    finally:
        listener.close()
