"""``hotdesk run ivr``'s ``/readyz``: 503 until its queue subscription for dial events is
bound at the server (the seat index and the prompt sets before it), 200 after."""

from __future__ import annotations

from pathlib import Path

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Config, NatsSettings
from hotdesk_ivr.main import QUEUE_GROUP
from tests.support.natslink import NatsLink
from tests.support.natsserver import NatsServer
from tests.support.service_process import hotdesk_run


async def test_readyz_is_503_until_the_dial_queue_is_bound_then_200(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    link = await NatsLink(own_nats_server.port).start()
    # The IVR's SUBscription to the dial events (and what it sends after) waits here.
    link.hold(f"SUB {subjects.EDGE_DIAL_ALL} {QUEUE_GROUP} ".encode())
    try:
        config = Config(nats=NatsSettings(url=link.url))
        async with hotdesk_run("ivr", config, tmp_path) as ivr:
            await ivr.first_readyz()
            await link.held.wait()
            pending = await ivr.get("/readyz")
            assert pending.status_code == 503
            assert pending.text.splitlines() == [
                "not ready: dial-queue",
                "ready: directory-watch, nats, prompts, seat-index, service",
            ]
            assert (await ivr.get("/healthz")).status_code == 200

            link.release()
            ready = await ivr.until_ready()
            assert ready.text == (
                "ready: dial-queue, directory-watch, nats, prompts, seat-index, service\n"
            )
    finally:
        await link.close()
