"""A call that ended before an IVR claimed it: the IVR's first command finds no call at
the edge, the edge answers with ``CallEnded(reason="gone")``, and the IVR lets the
call go instead of waiting for digits that will never come."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.commands import HangUp, PlayPrompts
from hotdesk_contracts.directory import SipSettings
from hotdesk_contracts.messages import CallEnded, FeatureDialled
from hotdesk_sip_edge.media.ivr_bridge import IvrCommandRouter
from tests.ivr.test_service import (
    EDGE,
    RUNNING,
    config,
    ledger_events,
    router,
    run_ivr,
    wait_ivr_ready,
)

__all__ = ["router"]  # the fixture, used here by name


async def test_a_command_for_a_call_the_edge_does_not_have_is_answered_call_gone(
    nc: Client, router: IvrCommandRouter
) -> None:
    ended: asyncio.Queue[tuple[str, CallEnded]] = asyncio.Queue()

    async def on_ended(msg: Msg) -> None:
        ended.put_nowait((msg.subject, msgspec.json.decode(msg.data, type=CallEnded)))

    sub = await nc.subscribe(f"{subjects.EDGE_PREFIX}.call.*.ended", cb=on_ended)
    try:
        await nc.flush()
        command = subjects.edge_command(EDGE)
        # A hang-up for a call that is not there needs no answer; a play does.
        await nc.publish(command, msgspec.json.encode(HangUp(call_id="gone-1")))
        await nc.publish(
            command, msgspec.json.encode(PlayPrompts(call_id="gone-2", prompts=["en/enter-pin"]))
        )
        subject, event = await asyncio.wait_for(ended.get(), 10)
        assert subject == subjects.edge_call_event("gone-2", "ended")
        assert (event.call_id, event.reason, event.origin) == ("gone-2", "gone", EDGE)
        assert ended.empty()
    finally:
        await sub.unsubscribe()


async def test_an_ivr_that_claims_a_call_already_ended_lets_it_go(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter
) -> None:
    # Told to stop, the IVR waits for its calls for up to an hour: it ends only if the
    # call it claimed has ended for it.
    cfg = msgspec.structs.replace(config(), sip=SipSettings(drain_seconds=3600))
    stopping = await run_ivr(nc, js, cfg, "ivr-gone")
    await wait_ivr_ready(nc)
    ctx, task = RUNNING[-1]
    commands: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_command(msg: Msg) -> None:
        commands.put_nowait(msg.data)

    sub = await nc.subscribe(subjects.edge_command(EDGE), cb=on_command)
    try:
        dialled = FeatureDialled(
            at=datetime.now(UTC),
            origin=EDGE,
            call_id="ended-before-claim",
            caller="HD0001",
            dialled="*77*100*",
            feature="login",
            argument="100",
        )
        await nc.publish(subjects.edge_dial("HD0001"), msgspec.json.encode(dialled))
        first = msgspec.json.decode(await asyncio.wait_for(commands.get(), 10))
        assert first["call_id"] == "ended-before-claim"  # claimed: it asked to play
        stopping.set()
        await asyncio.wait_for(task, 60)
    finally:
        await sub.unsubscribe()
    RUNNING.remove((ctx, task))
    assert await ledger_events(js, subjects.desk_ledger("HD0001")) == []
