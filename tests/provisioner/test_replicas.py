"""Several provisioner replicas on one nats-server, and restarts: a fetch answered by
any replica confirms the reprovision another started, a reprovision in flight survives
a restart, a vendor learned by one replica is used by all, and each outcome is
published once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.directory import Config, SipSettings
from hotdesk_contracts.messages import (
    ProvisioningEvent,
    ReprovisionConfirmed,
    ReprovisionFailed,
)
from hotdesk_provisioner.main import Provisioner
from hotdesk_provisioner.state import open_bucket
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.nats import ensure_jetstream
from tests.provisioner.samples import DIRECTORY, VENDOR_DESKS
from tests.provisioner.test_service import (
    AUTH,
    YEALINK_UA,
    FakeEdge,
    append,
    config,
    logged_in,
    registered,
)
from tests.support.natsserver import free_port

CISCO_UA = "Cisco-CP-7832-3PCC/11.0.1 (00562b043615)"


@pytest.fixture(autouse=True)
def _quiet_http_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="uvicorn")


@contextlib.asynccontextmanager
async def replica(
    nc: Client, js: JetStreamContext, cfg: Config, instance_id: str
) -> AsyncIterator[tuple[Provisioner, str]]:
    """One provisioner replica, running until the block ends."""
    # The streams and buckets exactly as production creates them (dedupe windows, limits).
    await ensure_jetstream(js)
    ctx = ServiceContext(
        name="provisioner",
        instance_id=instance_id,
        config=cfg,
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("test"),
    )
    service = Provisioner(ctx)
    task = asyncio.create_task(service.run())
    base = f"http://127.0.0.1:{cfg.provisioning.port}"
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(200):
            if task.done():
                await task  # raises what stopped it
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
    try:
        yield service, base
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)


async def outcomes(js: JetStreamContext, desk: str, wanted: int = 1) -> list[ProvisioningEvent]:
    """Every outcome stored for ``desk``: waits for ``wanted``, then for any extra one."""
    sub = await js.subscribe(subjects.provisioning_event(desk), deliver_policy=DeliverPolicy.ALL)
    found: list[ProvisioningEvent] = []
    try:
        for _ in range(wanted):
            msg = await sub.next_msg(timeout=10)
            found.append(msgspec.json.decode(msg.data, type=ProvisioningEvent))
        with contextlib.suppress(Exception):
            while True:
                msg = await sub.next_msg(timeout=0.5)
                found.append(msgspec.json.decode(msg.data, type=ProvisioningEvent))
    finally:
        await sub.unsubscribe()
    return found


async def stage_of(js: JetStreamContext, desk: str) -> str:
    kv = await open_bucket(js, streams.PROVISIONER)
    entry = await kv.get(f"reprovision.{desk}")
    assert entry.value is not None
    stage: str = msgspec.json.decode(entry.value)["stage"]
    return stage


async def wait_for_stage(js: JetStreamContext, desk: str, stage: str) -> None:
    for _ in range(200):
        with contextlib.suppress(Exception):
            if await stage_of(js, desk) == stage:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{desk} never reached stage {stage!r}")


async def test_a_fetch_answered_by_another_replica_confirms_the_reprovision(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    async with (
        replica(nc, js, config(free_port()), "provisioner-a") as (a, _),
        replica(nc, js, config(free_port()), "provisioner-b") as (_, base_b),
    ):
        await a.reprovision("HD0001")
        await asyncio.wait_for(edge.received.wait(), 10)
        await wait_for_stage(js, "HD0001", "fetch")
        async with httpx.AsyncClient(base_url=base_b, auth=AUTH) as http:
            fetched = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
        assert fetched.status_code == 200
        await wait_for_stage(js, "HD0001", "register")
        await registered(nc, "HD0001")
        found = await outcomes(js, "HD0001")
    assert len(found) == 1
    result = found[0]
    assert isinstance(result, ReprovisionConfirmed)
    assert result.reprovision_id == edge.commands[0].reprovision_id
    assert result.config_version == fetched.headers["ETag"].strip('"')
    assert len(edge.commands) == 1


async def test_a_reprovision_in_flight_survives_a_provisioner_restart(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    port = free_port()
    async with replica(nc, js, config(port), "provisioner-before") as (before, _):
        await before.reprovision("HD0001")
        await asyncio.wait_for(edge.received.wait(), 10)
        await wait_for_stage(js, "HD0001", "fetch")
    async with replica(nc, js, config(port), "provisioner-after") as (_, base):
        async with httpx.AsyncClient(base_url=base, auth=AUTH) as http:
            fetched = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
        assert fetched.status_code == 200
        await wait_for_stage(js, "HD0001", "register")
        await registered(nc, "HD0001")
        found = await outcomes(js, "HD0001")
    assert len(found) == 1
    assert isinstance(found[0], ReprovisionConfirmed)
    assert found[0].reprovision_id == edge.commands[0].reprovision_id
    assert found[0].origin == "provisioner-after"


async def test_a_restarted_provisioner_keeps_retrying_and_fails_once(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    cfg = config(free_port(), retries=1, retry_backoff_seconds=0.1, stage_timeout_seconds=0.5)
    async with replica(nc, js, cfg, "provisioner-before") as (before, _):
        await before.reprovision("HD0001")
        await asyncio.wait_for(edge.received.wait(), 10)
        await wait_for_stage(js, "HD0001", "fetch")
    # Stopped while the phone was to fetch; the next replica takes over the deadlines.
    async with replica(nc, js, cfg, "provisioner-after"):
        found = await outcomes(js, "HD0001")
    assert len(found) == 1
    result = found[0]
    assert isinstance(result, ReprovisionFailed)
    assert (result.stage, result.attempts) == ("fetch", 2)
    assert len(edge.commands) == 2
    assert {c.reprovision_id for c in edge.commands} == {result.reprovision_id}


async def test_two_replicas_watching_one_deadline_retry_once_and_fail_once(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    cfg_a = config(free_port(), retries=2, retry_backoff_seconds=0.1, stage_timeout_seconds=0.3)
    cfg_b = config(free_port(), retries=2, retry_backoff_seconds=0.1, stage_timeout_seconds=0.3)
    async with (
        replica(nc, js, cfg_a, "provisioner-a") as (a, _),
        replica(nc, js, cfg_b, "provisioner-b"),
    ):
        await a.reprovision("HD0001")
        found = await outcomes(js, "HD0001")
    assert len(found) == 1
    assert isinstance(found[0], ReprovisionFailed)
    assert found[0].attempts == 3
    assert len(edge.commands) == 3


def vendorless_cisco(port: int) -> Config:
    desk = msgspec.structs.replace(VENDOR_DESKS["cisco"], vendor="", model="")
    return Config(
        extensions=DIRECTORY.extensions,
        desks=[desk],
        sip=SipSettings(advertised_host="127.0.0.1"),
        provisioning=config(port).provisioning,
    )


async def test_a_vendor_learned_by_one_replica_picks_the_notify_event_on_another(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    async with (
        replica(nc, js, vendorless_cisco(free_port()), "provisioner-a") as (a, _),
        replica(nc, js, vendorless_cisco(free_port()), "provisioner-b") as (_, base_b),
    ):
        async with httpx.AsyncClient(
            base_url=base_b, auth=httpx.DigestAuth("HD0006", "desk-pw-6")
        ) as http:
            fetched = await http.get("/00562B043615.xml", headers={"User-Agent": CISCO_UA})
        assert fetched.status_code == 200
        for _ in range(200):
            if a.server.vendor_of(vendorless_cisco(0).desks[0])[0] == "cisco":
                break
            await asyncio.sleep(0.05)
        await a.reprovision("HD0006")
        await asyncio.wait_for(edge.received.wait(), 10)
    assert edge.commands[0].event == "resync"


async def test_a_restarted_replica_remembers_a_learned_vendor(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    port = free_port()
    async with replica(nc, js, vendorless_cisco(port), "provisioner-before") as (_, base):
        async with httpx.AsyncClient(
            base_url=base, auth=httpx.DigestAuth("HD0006", "desk-pw-6")
        ) as http:
            fetched = await http.get("/00562B043615.xml", headers={"User-Agent": CISCO_UA})
        assert fetched.status_code == 200
    async with replica(nc, js, vendorless_cisco(port), "provisioner-after") as (after, _):
        await after.reprovision("HD0006")
        await asyncio.wait_for(edge.received.wait(), 10)
    assert edge.commands[0].event == "resync"


async def test_a_login_on_the_ledger_is_confirmed_whichever_replica_takes_it(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    async with (
        replica(nc, js, config(free_port()), "provisioner-a"),
        replica(nc, js, config(free_port()), "provisioner-b") as (b, base_b),
    ):
        await append(js, logged_in("101"))
        await asyncio.wait_for(edge.received.wait(), 10)
        for _ in range(200):
            if b.seats.user_at("HD0001") == "101":
                break
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=base_b, auth=AUTH) as http:
            fetched = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
        assert b"account.1.label = 101 Bob & Co" in fetched.content
        await wait_for_stage(js, "HD0001", "register")
        await registered(nc, "HD0001")
        found = await outcomes(js, "HD0001")
    assert len(found) == 1
    assert isinstance(found[0], ReprovisionConfirmed)
    assert found[0].config_version == fetched.headers["ETag"].strip('"')
    assert len(edge.commands) == 1


async def test_a_restarted_replica_serves_the_seated_config_its_reprovision_expects(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    port = free_port()
    async with replica(nc, js, config(port), "provisioner-before"):
        await append(js, logged_in("101"))
        await asyncio.wait_for(edge.received.wait(), 10)
        await wait_for_stage(js, "HD0001", "fetch")
    async with replica(nc, js, config(port), "provisioner-after") as (_, base):
        # Fetched the moment the new replica answers: it has replayed the ledger.
        async with httpx.AsyncClient(base_url=base, auth=AUTH) as http:
            fetched = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
        assert b"account.1.label = 101 Bob & Co" in fetched.content
        await wait_for_stage(js, "HD0001", "register")
        await registered(nc, "HD0001")
        found = await outcomes(js, "HD0001")
    assert len(found) == 1
    assert isinstance(found[0], ReprovisionConfirmed)
    assert found[0].config_version == fetched.headers["ETag"].strip('"')
