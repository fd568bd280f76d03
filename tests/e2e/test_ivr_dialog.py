"""The edge as the UAS of a hot-desk call: in-dialog requests, refusals and its BYE."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.messages import CallEnded
from tests.e2e.raw_phone import OFFER, RawPhone
from tests.e2e.system import DESK_PASSWORD, running_system
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e


async def test_in_dialog_requests_of_an_ivr_call_are_answered_by_the_edge(
    nc: Client, js: JetStreamContext
) -> None:
    media = await RtpPeer().start()
    ended: asyncio.Queue[CallEnded] = asyncio.Queue()

    async def on_ended(msg: Msg) -> None:
        ended.put_nowait(msgspec.json.decode(msg.data, type=CallEnded))

    async with running_system(nc, js, (36100, 36199)) as system:
        phone = RawPhone(system.sip_port, "HD0001", DESK_PASSWORD)
        try:
            answer = await phone.invite("*77*100*", OFFER.format(port=media.port, formats="0 101"))
            assert answer.status == 200
            assert answer.headers.get("Content-Type") == "application/sdp"
            assert b"m=audio" in answer.body
            assert answer.to.tag
            sub = await nc.subscribe(subjects.edge_call_event(answer.call_id, "ended"), cb=on_ended)
            options = await phone.in_dialog("OPTIONS")
            assert options.status == 200
            again = await phone.in_dialog(
                "INVITE",
                extra="Content-Type: application/sdp\r\n",
                body=OFFER.format(port=media.port, formats="0 101"),
            )
            assert (again.status, again.body) == (200, answer.body)
            await phone.send(phone.message("ACK", phone.target, cseq=again.cseq.seq))
            info = await phone.in_dialog(
                "INFO",
                extra="Content-Type: application/dtmf-relay\r\n",
                body="Signal=1\r\nDuration=160\r\n",
            )
            assert info.status == 200
            bye = await phone.in_dialog("BYE")
            assert bye.status == 200
            assert (await asyncio.wait_for(ended.get(), 5)).reason == "bye"
            after = await phone.in_dialog("BYE")
            assert after.status == 481
            await sub.unsubscribe()
        finally:
            phone.close()
            media.close()


async def test_offer_without_a_common_codec_is_refused_with_488(
    nc: Client, js: JetStreamContext
) -> None:
    async with running_system(nc, js, (36200, 36299)) as system:
        phone = RawPhone(system.sip_port, "HD0001", DESK_PASSWORD)
        try:
            answer = await phone.invite("*77*100*", OFFER.format(port=40000, formats="18"))
        finally:
            phone.close()
    assert answer.status == 488
    assert "305" in (answer.headers.get("Warning") or "")


async def test_edge_hangs_up_with_a_bye_inside_the_dialog(nc: Client, js: JetStreamContext) -> None:
    media = await RtpPeer().start()
    async with running_system(nc, js, (36300, 36399)) as system:
        phone = RawPhone(system.sip_port, "HD0001", DESK_PASSWORD)
        try:
            # Desk HD0001 is idle: the IVR says so and hangs up at once.
            answer = await phone.invite("*77*5*", OFFER.format(port=media.port, formats="0 101"))
            assert answer.status == 200
            bye = await phone.request_from_edge(timeout=15)
            assert bye.method == "BYE"
            assert bye.uri == f"sip:HD0001@127.0.0.1:{phone.port}"
            assert bye.call_id == answer.call_id
            assert bye.from_.tag == answer.to.tag
            assert bye.to.tag == phone.from_tag
            assert bye.cseq.method == "BYE"
        finally:
            phone.close()
            media.close()
