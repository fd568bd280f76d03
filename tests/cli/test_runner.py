"""``hotdesk run``: a service that is not written yet idles instead of crashing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import types
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import make_asgi_app

from hotdesk_cli import runner
from hotdesk_contracts import subjects
from hotdesk_contracts.commands import LogIn
from hotdesk_contracts.directory import Config, Desk, Directory, NatsSettings, TelemetrySettings
from hotdesk_contracts.events import Cause, LoggedIn, LoggedOut, LogoutReason
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.config import load_config
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.directory import load_directory, publish_directory, request_reload
from hotdesk_runtime.nats import connect, ensure_jetstream
from tests.support.natsserver import NatsServer, free_port


@pytest.fixture
def fake_services(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    seen: dict[str, object] = {}

    async def serve(ctx: ServiceContext) -> None:
        seen["directory"] = ctx.directory
        seen["name"] = ctx.name
        await ctx.stopping.wait()

    module = types.ModuleType("hotdesk_fake_service_main")
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hotdesk_fake_service_main", module)
    monkeypatch.setitem(runner.SERVICES, "ghost", "hotdesk_ghost_service.main")
    monkeypatch.setitem(runner.SERVICES, "fake", "hotdesk_fake_service_main")
    return seen


def test_find_serve_tells_a_missing_service_from_a_written_one(
    fake_services: dict[str, object],
) -> None:
    assert runner.find_serve("ghost") is None
    assert runner.find_serve("fake") is not None
    with pytest.raises(runner.UnknownService):
        runner.find_serve("fax")


async def stop_soon() -> None:
    await asyncio.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


async def test_a_service_not_written_yet_idles_until_stopped(
    own_nats_server: NatsServer,
    fake_services: dict[str, object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = Config(nats=NatsSettings(url=own_nats_server.url))
    stopper = asyncio.create_task(stop_soon())
    code = await asyncio.wait_for(runner.run_service("ghost", config, None), 30)
    await stopper
    assert code == 0
    assert "service ghost is not implemented yet" in caplog.text


async def test_a_service_gets_the_published_directory(
    own_nats_server: NatsServer, fake_services: dict[str, object]
) -> None:
    config = Config(nats=NatsSettings(url=own_nats_server.url))
    nc, js = await connect(config, initial_attempts=3)
    await ensure_jetstream(js)
    published = Directory(desks=[Desk(name="HD0009", mac="00" * 6, sip_password="x")])
    await publish_directory(js, published)
    await nc.close()
    stopper = asyncio.create_task(stop_soon())
    code = await asyncio.wait_for(runner.run_service("fake", config, None), 30)
    await stopper
    assert code == 0
    assert fake_services["name"] == "fake"
    assert fake_services["directory"] == published


async def test_a_running_service_answers_health_readiness_and_metrics(
    own_nats_server: NatsServer, fake_services: dict[str, object]
) -> None:
    port = free_port()
    config = Config(
        nats=NatsSettings(url=own_nats_server.url),
        telemetry=TelemetrySettings(health_port=port),
    )
    run = asyncio.create_task(runner.run_service("fake", config, None, metrics_app=make_asgi_app()))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("never ready")
        assert (await client.get("/healthz")).text == "ok\n"
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "# HELP" in metrics.text
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(run, 30) == 0


async def test_a_service_owning_the_directory_publishes_it_and_answers_reloads(
    own_nats_server: NatsServer, fake_services: dict[str, object], tmp_path: Path
) -> None:
    path = tmp_path / "hotdesk.toml"
    path.write_text(
        '[[desks]]\nname = "HD0007"\nmac = "001565000007"\nsip_password = "x"\n\n'
        f'[nats]\nurl = "{own_nats_server.url}"\n',
        encoding="utf-8",
    )
    config = load_config(path, env={}).config
    run = asyncio.create_task(runner.run_service("fake", config, path, own_directory=True))
    nc, js = await connect(config, initial_attempts=3)
    for _ in range(200):
        with contextlib.suppress(Exception):
            reply = await request_reload(nc, timeout=0.5)
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no owner answered")
    assert reply.ok
    directory = await load_directory(js)
    assert directory is not None
    assert [d.name for d in directory.desks] == ["HD0007"]
    await nc.close()
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(run, 30) == 0


async def test_a_seated_desk_removed_from_the_file_is_logged_out_at_the_next_start(
    own_nats_server: NatsServer, fake_services: dict[str, object], tmp_path: Path
) -> None:
    path = tmp_path / "hotdesk.toml"
    desks = [("HD0007", "001565000007"), ("HD0008", "001565000008")]

    def write(names: list[tuple[str, str]]) -> None:
        text = "".join(
            f'[[desks]]\nname = "{n}"\nmac = "{m}"\nsip_password = "x"\n\n' for n, m in names
        )
        text += '[[extensions]]\nnumber = "100"\nname = "Alice"\n\n'
        path.write_text(text + f'[nats]\nurl = "{own_nats_server.url}"\n', encoding="utf-8")

    async def run_once(until: Callable[[], Awaitable[None]]) -> None:
        config = load_config(path, env={}).config
        run = asyncio.create_task(runner.run_service("fake", config, path, own_directory=True))
        try:
            await until()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            assert await asyncio.wait_for(run, 30) == 0

    write(desks)
    nc, js = await connect(Config(nats=NatsSettings(url=own_nats_server.url)), initial_attempts=3)
    await ensure_jetstream(js)
    ledger = Ledger(EventStore(js))

    async def seat_alice() -> None:
        for _ in range(200):
            directory = await load_directory(js)
            if directory is not None and directory.desk("HD0008") is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the directory was never published")
        await ledger.execute(
            LogIn(
                command_id="c1",
                at=datetime.now(UTC),
                cause=Cause(actor="user:100"),
                correlation_id="c1",
                desk="HD0008",
                user="100",
            )
        )

    await run_once(seat_alice)
    write(desks[:1])

    async def published_without_hd0008() -> None:
        for _ in range(200):
            directory = await load_directory(js)
            if directory is not None and directory.desk("HD0008") is None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the new directory was never published")

    await run_once(published_without_hd0008)  # a restart, not a reload
    events, _ = await EventStore(js).load(subjects.desk_ledger("HD0008"))
    await nc.close()
    assert [type(e) for e in events] == [LoggedIn, LoggedOut]
    assert isinstance(events[-1], LoggedOut)
    assert events[-1].reason is LogoutReason.DESK_REMOVED
