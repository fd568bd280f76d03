"""``hotdesk run sip-edge``'s ``/metrics`` after real REGISTERs: the registrations
answered, the authentication failures, the addresses of record in the location store,
and the ledger follower's lag once it has applied the logins."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import nats

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import encode_event
from hotdesk_contracts.events import Cause, LoggedIn
from tests.sip_edge.harness import DESK_PASSWORD, Phone
from tests.sip_edge.test_readiness import edge_config
from tests.support.natsserver import NatsServer
from tests.support.service_process import ServiceProcess, hotdesk_run, sample

Wanted = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scraped(edge: ServiceProcess, wanted: Wanted) -> dict[object, float | None]:
    seen: dict[object, float | None] = {}
    for _ in range(300):  # the polled gauges are read every few seconds
        samples = await edge.metrics()
        seen = {key: sample(samples, key[0], **dict(key[1])) for key in wanted}
        if seen == wanted:
            break
        await asyncio.sleep(0.1)
    return seen


async def test_registrations_auth_failures_and_the_followers_lag_are_exported(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await nats.connect(own_nats_server.url)
    config = edge_config(own_nats_server.url)
    phone = Phone(config.sip.port)
    try:
        async with hotdesk_run("sip-edge", config, tmp_path) as edge:
            await edge.until_ready()
            wrong = await phone.register("HD0001", "not-the-password", call_id="reg-wrong")
            assert wrong.status == 403
            ok = await phone.register("HD0001", DESK_PASSWORD)
            assert ok.status == 200
            for n, (desk, user) in enumerate([("HD0001", "100"), ("HD0002", "101")]):
                event = LoggedIn(
                    event_id=f"e{n}",
                    at=datetime.now(UTC),
                    cause=Cause(actor="test"),
                    correlation_id=f"c{n}",
                    desk=desk,
                    user=user,
                )
                await nc.jetstream().publish(subjects.desk_ledger(desk), encode_event(event))

            wanted: Wanted = {
                ("hotdesk_sip_registrations_total", ()): 1,
                ("hotdesk_sip_auth_failures_total", ()): 1,
                ("hotdesk_sip_registered_aors", ()): 1,
                ("hotdesk_sip_active_calls", ()): 0,
                (
                    "hotdesk_projection_lag",
                    (("projection", "sip-edge-logins"), ("stream", streams.LEDGER.name)),
                ): 0,
            }
            assert await scraped(edge, wanted) == wanted
    finally:
        phone.close()
        await nc.close()
