"""Digits a caller types before any IVR has claimed the call reach the IVR that claims
it, in order: the edge holds them until the IVR's first command, since an IVR only
listens to a call's events from just before that command."""

from __future__ import annotations

import asyncio

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from hotdesk_contracts import subjects
from hotdesk_contracts.commands import PlayPrompts
from hotdesk_contracts.messages import DtmfReceived
from hotdesk_sip_edge.media.ivr_bridge import IvrCommandRouter
from tests.ivr.test_service import EDGE, call, router

__all__ = ["router"]  # the fixture, used here by name


async def test_digits_typed_before_the_claim_reach_the_claiming_ivr_in_order(
    nc: Client, router: IvrCommandRouter
) -> None:
    phone = await call(nc, router, "*77*100*")
    call_id = phone.bridge.call_id
    await phone.press("1234#")  # nobody listens yet: a busy IVR has not claimed the call
    await asyncio.sleep(0.2)
    heard: list[DtmfReceived] = []
    all_five = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        if msg.subject.endswith(".dtmf"):
            heard.append(msgspec.json.decode(msg.data, type=DtmfReceived))
            if len(heard) == 5:
                all_five.set()

    sub = await nc.subscribe(subjects.edge_call_events(call_id), cb=on_event)
    try:
        assert heard == []
        claim = PlayPrompts(call_id=call_id, prompts=["en/enter-pin"])
        await nc.publish(subjects.edge_command(EDGE), msgspec.json.encode(claim))
        await asyncio.wait_for(all_five.wait(), 10)
        assert [(d.digit, d.seq) for d in heard] == [
            ("1", 1),
            ("2", 2),
            ("3", 3),
            ("4", 4),
            ("#", 5),
        ]
    finally:
        await sub.unsubscribe()
        await phone.bridge.on_bye()
