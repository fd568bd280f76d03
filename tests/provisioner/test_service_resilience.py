"""The provisioner against a real nats-server when things change or fail: a directory
reload reprovisions the desks whose files changed, a trigger that fails on a transient
error is redelivered, and a failing trigger fetch is retried while readiness says so."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import msgspec
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Config, Extension
from hotdesk_contracts.messages import ReprovisionConfirmed
from hotdesk_provisioner.main import TRIGGERS_PART, Provisioner
from hotdesk_provisioner.reprovision import Reprovision
from hotdesk_provisioner.state import ReprovisionStore, StateError
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.nats import ensure_jetstream
from tests.provisioner.test_service import (
    AUTH,
    YEALINK_UA,
    FakeEdge,
    append,
    config,
    logged_in,
    outcome,
    registered,
)
from tests.support.natsserver import free_port


@pytest.fixture(autouse=True)
def _quiet_http_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="uvicorn")


@contextlib.asynccontextmanager
async def provisioner(
    nc: Client, js: JetStreamContext, cfg: Config
) -> AsyncIterator[tuple[Provisioner, str]]:
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
    service = Provisioner(ctx)
    service.retry_initial_seconds = 0.05
    service.retry_max_seconds = 0.2
    task = asyncio.create_task(service.run())
    base = f"http://127.0.0.1:{cfg.provisioning.port}"
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
    try:
        yield service, base
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(what)


async def fetch_desk_file(base: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, auth=AUTH) as http:
        return await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})


async def test_a_changed_logout_code_reprovisions_the_desk_to_the_new_files(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    async with provisioner(nc, js, config(free_port())) as (service, base):
        ctx = service.ctx
        # A change no desk file shows starts nothing.
        unrelated = msgspec.structs.replace(
            ctx.directory,
            extensions=[*ctx.directory.extensions, Extension(number="199", name="Nobody")],
        )
        await ctx.set_directory(unrelated)
        codes = msgspec.structs.replace(ctx.directory.dial_codes, logout="*88*")
        await ctx.set_directory(msgspec.structs.replace(ctx.directory, dial_codes=codes))
        await asyncio.wait_for(edge.received.wait(), 10)
        assert [c.desk for c in edge.commands] == ["HD0001"]
        fetched = await fetch_desk_file(base)
        assert b"*88*" in fetched.content
        waiting = asyncio.create_task(outcome(js, "HD0001"))
        await asyncio.sleep(0.1)
        await registered(nc, "HD0001")
        result = await waiting
    assert isinstance(result, ReprovisionConfirmed)
    assert result.config_version == fetched.headers["ETag"].strip('"')
    assert len(edge.commands) == 1


async def test_a_renamed_seated_user_reprovisions_and_a_newer_fetch_counts(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    async with provisioner(nc, js, config(free_port())) as (service, base):
        ctx = service.ctx
        await append(js, logged_in("101"))
        await asyncio.wait_for(edge.received.wait(), 10)
        first = edge.commands[0].reprovision_id
        edge.received.clear()
        renamed = [
            msgspec.structs.replace(e, name="Robert") if e.number == "101" else e
            for e in ctx.directory.extensions
        ]
        await ctx.set_directory(msgspec.structs.replace(ctx.directory, extensions=renamed))
        await asyncio.wait_for(edge.received.wait(), 10)
        assert edge.commands[-1].reprovision_id != first
        fetched = await fetch_desk_file(base)
        assert b"Robert" in fetched.content
        waiting = asyncio.create_task(outcome(js, "HD0001"))
        await asyncio.sleep(0.1)
        await registered(nc, "HD0001")
        result = await waiting
    assert isinstance(result, ReprovisionConfirmed)
    assert result.config_version == fetched.headers["ETag"].strip('"')


class FailingStore(ReprovisionStore):
    """The real store, whose first ``failures`` saves fail like an unreachable bucket."""

    def __init__(self, real: ReprovisionStore, failures: int) -> None:
        super().__init__(real.kv, real.owner)
        self.failures = failures
        self.failed = 0

    async def save(self, reprovision: Reprovision, last: int | None) -> int:
        if self.failed < self.failures:
            self.failed += 1
            raise StateError("injected: the state bucket is unreachable")
        return await super().save(reprovision, last)


async def test_a_trigger_failing_on_the_state_bucket_is_redelivered_until_it_succeeds(
    nc: Client, js: JetStreamContext
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    async with provisioner(nc, js, config(free_port())) as (service, _base):
        real = service._store
        assert real is not None
        failing = FailingStore(real, failures=2)
        service._store = failing
        await append(js, logged_in("101"))
        await asyncio.wait_for(edge.received.wait(), 10)
    assert failing.failed == 2
    assert [c.desk for c in edge.commands] == ["HD0001"]


async def test_failing_trigger_fetches_are_retried_and_the_service_is_not_ready_meanwhile(
    nc: Client, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    edge = FakeEdge()
    await nc.subscribe(subjects.EDGE_COMMAND_ANY, queue="edges", cb=edge.handle)
    broken = True
    failed = 0
    real_fetch = JetStreamContext.PullSubscription.fetch

    async def fetch(
        self: JetStreamContext.PullSubscription, *args: object, **kwargs: object
    ) -> object:
        nonlocal failed
        if broken:
            failed += 1
            raise nats.errors.Error("injected: fetch failed")
        fetched: Awaitable[object] = real_fetch(self, *args, **kwargs)  # type: ignore[arg-type]
        return await fetched

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", fetch)
    async with provisioner(nc, js, config(free_port())) as (service, _base):
        ctx = service.ctx
        # The consumer reported ready when it started; a failed fetch takes that back
        # (the HTTP server is up by now, so only the triggers are missing).
        await eventually(
            lambda: failed >= 1 and ctx.not_ready() == [TRIGGERS_PART], "never reported not ready"
        )
        broken = False
        await eventually(lambda: ctx.ready, "never ready again")
        await append(js, logged_in("101"))
        await asyncio.wait_for(edge.received.wait(), 10)
    assert [c.desk for c in edge.commands] == ["HD0001"]
