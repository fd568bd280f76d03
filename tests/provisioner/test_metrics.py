"""``hotdesk run provisioner``'s ``/metrics``: reprovision outcomes by outcome and stage
(a login with no edge to send the NOTIFY fails at ``notify``; a logout whose phone
fetches and re-registers is confirmed), and the trigger consumer's lag."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import msgspec
import nats

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.directory import NatsSettings
from hotdesk_contracts.events import Cause, LoggedOut, LogoutReason
from tests.provisioner.test_service import (
    AT,
    AUTH,
    YEALINK_UA,
    FakeEdge,
    append,
    config,
    logged_in,
    registered,
)
from tests.support.natsserver import NatsServer, free_port
from tests.support.service_process import ServiceProcess, hotdesk_run, sample


async def reprovisions(provisioner: ServiceProcess) -> dict[tuple[str, str], float | None]:
    samples = await provisioner.metrics()
    out: dict[tuple[str, str], float | None] = {
        ("confirmed", ""): sample(samples, "hotdesk_reprovisions_total", outcome="confirmed")
    }
    for stage in ("notify", "fetch", "register"):
        out["failed", stage] = sample(
            samples, "hotdesk_reprovisions_total", outcome="failed", stage=stage
        )
    return out


async def until(provisioner: ServiceProcess, wanted: dict[tuple[str, str], float]) -> None:
    seen: dict[tuple[str, str], float | None] = {}
    for _ in range(300):
        seen = await reprovisions(provisioner)
        if seen == wanted:
            return
        await asyncio.sleep(0.1)
    assert seen == wanted


async def test_reprovision_outcomes_are_counted_by_outcome_and_stage(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await nats.connect(own_nats_server.url)
    js = nc.jetstream()
    http_port = free_port()
    cfg = msgspec.structs.replace(
        config(http_port, retries=0, stage_timeout_seconds=5.0),
        nats=NatsSettings(url=own_nats_server.url),
    )
    try:
        async with hotdesk_run("provisioner", cfg, tmp_path) as provisioner:
            await provisioner.until_ready()
            none = {("confirmed", ""): 0.0} | {
                ("failed", s): 0.0 for s in ("notify", "fetch", "register")
            }
            assert await reprovisions(provisioner) == none

            # No edge answers the check-sync request: the NOTIFY stage fails at once.
            await append(js, logged_in("101"))
            await until(provisioner, none | {("failed", "notify"): 1.0})

            edge = FakeEdge()
            await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
            await append(
                js,
                LoggedOut(
                    event_id="e2",
                    at=AT,
                    cause=Cause(actor="user:101"),
                    correlation_id="c2",
                    desk="HD0001",
                    user="101",
                    reason=LogoutReason.USER_KEY,
                ),
            )
            await asyncio.wait_for(edge.received.wait(), 30)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{http_port}", auth=AUTH
            ) as http:
                fetched = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
            assert fetched.status_code == 200
            # The phone registers again with its new config (as phones do, until it counts).
            for _ in range(150):
                await registered(nc, "HD0001")
                if (await reprovisions(provisioner))["confirmed", ""] == 1:
                    break
                await asyncio.sleep(0.2)
            await until(provisioner, none | {("failed", "notify"): 1.0, ("confirmed", ""): 1.0})

            samples = await provisioner.metrics()
            for _ in range(300):  # polled every few seconds
                backlog = sample(
                    samples,
                    "hotdesk_projection_lag",
                    projection="provisioner-triggers",
                    stream=streams.LEDGER.name,
                )
                if backlog is not None:
                    break
                await asyncio.sleep(0.1)
                samples = await provisioner.metrics()
            assert backlog == 0
    finally:
        await nc.close()
