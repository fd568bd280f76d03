"""``hotdesk run provisioner``'s ``/readyz``: 503 until the reprovision trigger consumer is
bound and the provisioning HTTP server listens, 200 after."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hotdesk_contracts import streams
from hotdesk_contracts.directory import NatsSettings
from hotdesk_provisioner.main import TRIGGER_CONSUMER
from tests.provisioner.test_service import config
from tests.support.natslink import NatsLink
from tests.support.natsserver import NatsServer, free_port
from tests.support.service_process import hotdesk_run


async def test_readyz_is_503_until_the_trigger_consumer_and_http_are_up_then_200(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    link = await NatsLink(own_nats_server.port).start()
    # Binding the durable trigger consumer (its info, then its creation) waits here.
    link.hold(f"{streams.LEDGER.name}.{TRIGGER_CONSUMER}".encode())
    try:
        cfg = msgspec.structs.replace(config(free_port()), nats=NatsSettings(url=link.url))
        async with hotdesk_run("provisioner", cfg, tmp_path) as provisioner:
            await provisioner.first_readyz()
            await link.held.wait()
            pending = await provisioner.get("/readyz")
            assert pending.status_code == 503
            assert pending.text.splitlines() == [
                "not ready: provisioning-http, reprovision-triggers",
                "ready: directory-watch, nats, service",
            ]

            link.release()
            ready = await provisioner.until_ready()
            assert ready.text == (
                "ready: directory-watch, nats, provisioning-http, reprovision-triggers, service\n"
            )
    finally:
        await link.close()
