"""``hotdesk run presence``'s ``/readyz``: 503 until every projection has caught up with
its streams and the admin API listens, 200 after; the body names the parts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hotdesk_contracts import streams
from hotdesk_contracts.directory import Config, HttpSettings, NatsSettings
from tests.support.natslink import NatsLink
from tests.support.natsserver import NatsServer, free_port
from tests.support.service_process import hotdesk_run


async def test_readyz_is_503_until_every_projection_caught_up_then_200(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    link = await NatsLink(own_nats_server.port).start()
    # The third ledger projection's durable consumer waits here: the first two catch up.
    link.hold(f"CONSUMER.CREATE.{streams.LEDGER.name}.projection-presence-history".encode())
    try:
        config = Config(
            nats=NatsSettings(url=link.url),
            admin=HttpSettings(listen="127.0.0.1", port=free_port()),
        )
        async with hotdesk_run("presence", config, tmp_path) as presence:
            await presence.first_readyz()
            await link.held.wait()
            expected = [
                "not ready: presence-blf, presence-desk-status, presence-history",
                "ready: admin-http, directory-watch, nats, presence-desks, presence-users, service",
            ]
            for _ in range(200):  # the admin API starts listening beside the catch-up
                pending = await presence.get("/readyz")
                assert pending.status_code == 503
                assert "presence-history" in pending.text.splitlines()[0]
                if pending.text.splitlines() == expected:
                    break
                await asyncio.sleep(0.05)
            assert pending.text.splitlines() == expected

            link.release()
            ready = await presence.until_ready()
            assert ready.text == (
                "ready: admin-http, directory-watch, nats, presence-blf, presence-desk-status, "
                "presence-desks, presence-history, presence-users, service\n"
            )
    finally:
        await link.close()
