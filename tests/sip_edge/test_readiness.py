"""``hotdesk run sip-edge``'s ``/readyz``: 503 until every part is up (the ledger
follower, the command subscriptions, the SIP transports, the BLF watch), 200 after."""

from __future__ import annotations

from pathlib import Path

from hotdesk_contracts import streams
from hotdesk_contracts.directory import Config, Desk, Extension, NatsSettings, SipSettings
from tests.sip_edge.harness import DESK_PASSWORD, EXT_PASSWORD, free_udp_port
from tests.support.natslink import NatsLink
from tests.support.natsserver import NatsServer
from tests.support.service_process import hotdesk_run


def edge_config(nats_url: str) -> Config:
    rtp = free_udp_port()
    sip = SipSettings(
        listen="127.0.0.1",
        advertised_host="127.0.0.1",
        port=free_udp_port(),
        rtp_port_min=rtp,
        rtp_port_max=rtp + 9,
    )
    return Config(
        nats=NatsSettings(url=nats_url),
        sip=sip,
        desks=[Desk(name="HD0001", mac="001565000001", sip_password=DESK_PASSWORD)],
        extensions=[Extension(number="101", name="Bob Example", sip_password=EXT_PASSWORD)],
    )


async def test_readyz_is_503_until_the_blf_watch_is_bound_then_200(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    link = await NatsLink(own_nats_server.port).start()
    # The BLF watch's consumer on the bucket (the edge's last part to start) waits here.
    link.hold(f"CONSUMER.CREATE.KV_{streams.BLF.bucket}".encode())
    try:
        async with hotdesk_run("sip-edge", edge_config(link.url), tmp_path) as edge:
            await edge.first_readyz()
            await link.held.wait()
            pending = await edge.get("/readyz")
            assert pending.status_code == 503
            assert pending.text.splitlines() == [
                "not ready: blf-watch",
                "ready: check-sync, directory-watch, ivr-router, ledger-follower, nats, "
                "service, sip-transports",
            ]
            assert (await edge.get("/healthz")).status_code == 200

            link.release()
            ready = await edge.until_ready()
            assert ready.text == (
                "ready: blf-watch, check-sync, directory-watch, ivr-router, ledger-follower, "
                "nats, service, sip-transports\n"
            )
    finally:
        await link.close()
