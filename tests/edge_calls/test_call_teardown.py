"""An ended IVR call leaves nothing for the garbage collector: its bridge, media session
and their timers go by reference counting, so calls ending never pile up into a long
collection pause that delays every other call's RTP."""

from __future__ import annotations

import asyncio
import gc
import weakref

from nats.aio.client import Client

from hotdesk_contracts.commands import PlayPrompts
from hotdesk_sip_edge.media.ivr_bridge import IvrBridge
from tests.sip_edge.media.rtp_peer import RtpPeer

PORTS = (34000, 34999)


class Prompts:
    async def get(self, prompt_id: str) -> bytes | None:
        return bytes(range(256)) * 25  # 0.4 s of 16-bit PCM


async def test_an_ended_call_is_freed_without_a_garbage_collection(nc: Client) -> None:
    peer = await RtpPeer().start()
    gc.collect()
    gc.disable()
    try:
        bridge = await IvrBridge.answer_call(
            nc=nc,
            edge_id="edge-teardown",
            call_id="teardown-1@127.0.0.1",
            send_bye=lambda: None,
            offer=peer.offer(),
            local_host="127.0.0.1",
            port_range=PORTS,
            prompts=Prompts(),
            media_timeout=30.0,
        )
        await bridge.start(caller="HD0001", dialled="*77*100*", feature="login", argument="100")
        await bridge.command(PlayPrompts(call_id=bridge.call_id, prompts=["en/enter-pin"]))
        await peer.collect(3)  # mid-prompt
        await bridge.on_bye()
        assert bridge.media is not None
        gone = [weakref.ref(bridge), weakref.ref(bridge.media)]
        del bridge
        await nc.flush()
        await asyncio.sleep(0.1)  # the command worker and the publishes finish
        assert [ref() for ref in gone] == [None, None]
    finally:
        gc.enable()
        peer.close()
