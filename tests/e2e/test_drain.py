"""A rolling update does not cut a login in half: told to stop (SIGTERM sets
``ctx.stopping``) while a SIPp desk is typing its PIN, the edge answers new calls 503
and the IVR claims no new ones, the call in progress finishes and is stored, and only
then do both services end."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LoggedIn
from tests.e2e.system import DESK_PASSWORD, PINS, running_system, sipp_desk_call
from tests.sip_edge.harness import Phone, authorized_invite
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e


async def test_stopping_services_finish_the_login_in_progress_and_refuse_new_calls(
    nc: Client, js: JetStreamContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_system(nc, js, (36800, 36899)) as system:
        edge_ctx, edge_task = system.services["sip-edge"]
        ivr_ctx, ivr_task = system.services["ivr"]
        listener = await RtpPeer().start()
        phone = Phone(system.sip_port)
        try:
            call = asyncio.create_task(
                sipp_desk_call(
                    system,
                    tmp_path,
                    desk="HD0001",
                    dial="*77*100*",
                    digits=PINS["100"] + "#",
                    rtp_listener=listener.port,
                    digits_from_listener=True,
                )
            )
            # The IVR has the call once its first prompt plays; then both are told to stop.
            await listener.next(timeout=30)
            edge_ctx.stopping.set()
            ivr_ctx.stopping.set()

            refused = await authorized_invite(phone, "HD0002", DESK_PASSWORD, "*77*101*")
            assert (refused.status, refused.reason) == (503, "Shutting Down")
            assert refused.headers.get("Retry-After") == "5"
            assert not edge_task.done()
            assert not ivr_task.done()

            run = await call
            assert run.returncode == 0, run.stderr[-2000:] + run.messages[-3000:]
            # Both end by themselves once the call has: no drain time is waited out.
            await asyncio.wait_for(asyncio.gather(edge_task, ivr_task), 60)
        finally:
            phone.close()
            listener.close()
        events = await system.desk_ledger("HD0001")
    assert [(type(e), e.user) for e in events] == [(LoggedIn, "100")]
    assert await system.ledger(subjects.desk_ledger("HD0002")) == []
    said = [r.getMessage() for r in caplog.records]
    assert "stopping: new calls refused, waiting for the calls in progress" in said
    assert "stopping: no new calls claimed, waiting for the calls in progress" in said
    assert said.count("stopping: every call ended") == 2
    assert not any("still" in m and "after the drain time" in m for m in said)
