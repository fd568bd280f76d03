"""The provisioner service against a real nats-server: a ledger event leads to a
check-sync command, a fetch of the new config and a re-registration to
``ReprovisionConfirmed``; a desk that never fetches ends in ``ReprovisionFailed``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.codec import encode_event
from hotdesk_contracts.commands import EdgeCommand, SendCheckSync
from hotdesk_contracts.directory import Config, ProvisioningSettings, SipSettings
from hotdesk_contracts.events import Cause, LoggedIn, LoggedOut, LogoutReason
from hotdesk_contracts.messages import (
    CheckSyncResult,
    ProvisioningEvent,
    RegistrationChanged,
    ReprovisionConfirmed,
    ReprovisionFailed,
)
from hotdesk_provisioner.main import serve
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.nats import ensure_jetstream
from tests.provisioner.samples import DIRECTORY, VENDOR_DESKS
from tests.support.natsserver import free_port

YEALINK_UA = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56"
AUTH = httpx.DigestAuth("HD0001", "desk-pw-1")
AT = datetime(2026, 1, 1, tzinfo=UTC)


class FakeEdge:
    """Answers every SendCheckSync with a fixed status, as an edge would after the NOTIFY."""

    def __init__(self, status: int = 200, contacts: int = 1) -> None:
        self.status = status
        self.contacts = contacts
        self.commands: list[SendCheckSync] = []
        self.received = asyncio.Event()

    async def handle(self, msg: Msg) -> None:
        command = msgspec.json.decode(msg.data, type=EdgeCommand)
        assert isinstance(command, SendCheckSync)
        self.commands.append(command)
        self.received.set()
        result = CheckSyncResult(
            at=AT,
            origin="edge-test",
            desk=command.desk,
            reprovision_id=command.reprovision_id,
            status=self.status,
            contacts=self.contacts,
        )
        await msg.respond(msgspec.json.encode(result))


def config(port: int, **provisioning: object) -> Config:
    settings = {"listen": "127.0.0.1", "port": port, **provisioning}
    return Config(
        extensions=DIRECTORY.extensions,
        desks=[VENDOR_DESKS["yealink"]],
        sip=SipSettings(advertised_host="127.0.0.1"),
        provisioning=ProvisioningSettings(**settings),  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running(
    nc: Client, js: JetStreamContext, cfg: Config, scheme: str = "http"
) -> AsyncIterator[str]:
    # The streams and buckets exactly as production creates them (dedupe windows, limits).
    await ensure_jetstream(js)
    ctx = ServiceContext(
        name="provisioner",
        instance_id="provisioner-test",
        config=cfg,
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("test"),
    )
    task = asyncio.create_task(serve(ctx))
    base = f"{scheme}://127.0.0.1:{cfg.provisioning.port}"
    async with httpx.AsyncClient(base_url=base, verify=False) as http:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
    try:
        yield base
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)


async def outcome(js: JetStreamContext, desk: str) -> ProvisioningEvent:
    sub = await js.subscribe(subjects.provisioning_event(desk))
    try:
        msg = await sub.next_msg(timeout=10)
    finally:
        await sub.unsubscribe()
    event: ProvisioningEvent = msgspec.json.decode(msg.data, type=ProvisioningEvent)
    return event


async def append(js: JetStreamContext, event: LoggedIn | LoggedOut) -> None:
    await js.publish(subjects.desk_ledger(event.desk), encode_event(event))


def logged_in(user: str) -> LoggedIn:
    return LoggedIn(
        event_id="e1",
        at=AT,
        cause=Cause(actor=f"user:{user}"),
        correlation_id="c1",
        desk="HD0001",
        user=user,
    )


async def registered(nc: Client, desk: str) -> None:
    change = RegistrationChanged(
        at=AT,
        origin="edge-test",
        aor=desk,
        kind="registered",
        contacts=["sip:HD0001@127.0.0.1:5062"],
        user_agent=YEALINK_UA,
    )
    await nc.publish(subjects.edge_registration(desk, "registered"), msgspec.json.encode(change))


async def test_login_is_confirmed_after_notify_fetch_and_reregistration(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    async with running(nc, js, config(free_port())) as base:
        await append(js, logged_in("101"))
        await asyncio.wait_for(edge.received.wait(), 10)
        assert edge.commands[0].desk == "HD0001"
        assert edge.commands[0].event == "check-sync;reboot=false"
        async with httpx.AsyncClient(base_url=base, auth=AUTH) as http:
            fetched = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
        assert b"account.1.label = 101 Bob & Co" in fetched.content
        assert b"linekey.1.value = *77*5*" in fetched.content
        assert b"linekey.2.value = 100" in fetched.content
        waiting = asyncio.create_task(outcome(js, "HD0001"))
        await asyncio.sleep(0.1)
        await registered(nc, "HD0001")
        result = await waiting
        assert isinstance(result, ReprovisionConfirmed)
        assert result.reprovision_id == edge.commands[0].reprovision_id
        assert result.config_version == fetched.headers["ETag"].strip('"')
        assert result.attempts == 1

        # Logging out gives the idle config back.
        edge.received.clear()
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
        await asyncio.wait_for(edge.received.wait(), 10)
        async with httpx.AsyncClient(base_url=base, auth=AUTH) as http:
            idle = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
        assert b"account.1.label = HD0001" in idle.content
        assert b"linekey.2.type = 0" in idle.content


async def test_a_desk_that_never_fetches_ends_in_reprovision_failed(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    cfg = config(free_port(), retries=1, retry_backoff_seconds=0.1, stage_timeout_seconds=0.3)
    async with running(nc, js, cfg):
        waiting = asyncio.create_task(outcome(js, "HD0001"))
        await asyncio.sleep(0.1)
        await append(js, logged_in("102"))
        result = await waiting
    assert isinstance(result, ReprovisionFailed)
    assert (result.stage, result.attempts) == ("fetch", 2)
    assert len(edge.commands) == 2
    assert {c.reprovision_id for c in edge.commands} == {result.reprovision_id}


async def test_without_an_edge_the_notify_stage_fails(nc: Client, js: JetStreamContext) -> None:
    cfg = config(free_port(), retries=1, retry_backoff_seconds=0.1, stage_timeout_seconds=0.3)
    async with running(nc, js, cfg):
        waiting = asyncio.create_task(outcome(js, "HD0001"))
        await asyncio.sleep(0.1)
        await append(js, logged_in("100"))
        result = await waiting
    assert isinstance(result, ReprovisionFailed)
    assert result.stage == "notify"


async def test_an_offline_desk_is_reprovisioned_when_it_registers(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge(status=0, contacts=0)
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    cfg = config(free_port(), stage_timeout_seconds=0.3, retry_backoff_seconds=0.1)
    async with running(nc, js, cfg) as base:
        await append(js, logged_in("101"))
        await asyncio.wait_for(edge.received.wait(), 10)
        await asyncio.sleep(0.5)  # longer than a stage: offline waits without failing
        edge.status, edge.contacts = 200, 1
        edge.received.clear()
        await registered(nc, "HD0001")
        await asyncio.wait_for(edge.received.wait(), 10)
        assert len(edge.commands) == 2
        async with httpx.AsyncClient(base_url=base, auth=AUTH) as http:
            await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
        waiting = asyncio.create_task(outcome(js, "HD0001"))
        await asyncio.sleep(0.1)
        await registered(nc, "HD0001")
        result = await waiting
    assert isinstance(result, ReprovisionConfirmed)


@pytest.fixture(autouse=True)
def _quiet_http_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="uvicorn")


async def test_files_are_served_over_tls_when_a_certificate_is_configured(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    cfg = config(port, tls_cert=str(cert), tls_key=str(key))
    async with running(nc, js, cfg, scheme="https"):
        trust = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=trust, auth=AUTH) as https:
            response = await https.get(
                f"https://127.0.0.1:{port}/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA}
            )
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/healthz")
    assert response.status_code == 200
    assert b"account.1.label = HD0001" in response.content
