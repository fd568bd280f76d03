"""Readiness parts and ``/readyz`` against a real nats-server: 503 naming what is not
ready until every part is, 200 naming them all after; a part tied to an event, a
check or a task follows it; a subscription counts as bound once the server has it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import httpx
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hotdesk_contracts.directory import Config
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.health import HealthServer
from tests.support.natslink import NatsLink
from tests.support.natsserver import NatsServer, free_port


def context(nc: Client, js: JetStreamContext) -> ServiceContext:
    return ServiceContext(
        name="test",
        instance_id="test-1",
        config=Config(),
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("test"),
    )


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(what)


async def test_readyz_names_the_parts_and_says_503_until_each_is_ready(
    nc: Client, js: JetStreamContext
) -> None:
    ctx = context(nc, js)
    connected = [True]
    ctx.add_check("nats", lambda: connected[0])
    ctx.expect("consumer", "listener")
    health = HealthServer(free_port(), ctx.readiness, host="127.0.0.1")
    await health.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health.port}") as http:
            answer = await http.get("/readyz")
            assert answer.status_code == 503
            assert answer.text == "not ready: consumer, listener\nready: nats\n"
            assert (await http.get("/healthz")).status_code == 200

            ctx.set_ready("consumer", True)
            answer = await http.get("/readyz")
            assert (answer.status_code, answer.text) == (
                503,
                "not ready: listener\nready: consumer, nats\n",
            )
            ctx.set_ready("listener", True)
            answer = await http.get("/readyz")
            assert (answer.status_code, answer.text) == (200, "ready: consumer, listener, nats\n")

            connected[0] = False  # a check is asked at every probe
            answer = await http.get("/readyz")
            assert (answer.status_code, answer.text) == (
                503,
                "not ready: nats\nready: consumer, listener\n",
            )
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await health.stop()


async def test_parts_follow_an_event_a_check_and_a_task(nc: Client, js: JetStreamContext) -> None:
    ctx = context(nc, js)
    caught_up = asyncio.Event()
    listening = [False]
    ctx.ready_when("follower", caught_up)
    ctx.ready_when("listener", lambda: listening[0])
    assert ctx.not_ready() == ["follower", "listener"]
    caught_up.set()
    await eventually(lambda: ctx.not_ready() == ["listener"], "the event was not followed")
    listening[0] = True
    await eventually(lambda: ctx.ready, "the check was not followed")

    release = asyncio.Event()
    consumer = asyncio.create_task(release.wait())
    ctx.set_ready("consumer", True)
    ctx.watch_task("consumer", consumer)
    assert ctx.ready
    release.set()  # its loop ended while the service runs: it no longer works
    await consumer
    await eventually(lambda: ctx.not_ready() == ["consumer"], "an ended task left it ready")

    stopped = asyncio.create_task(asyncio.Event().wait())
    ctx.set_ready("stopped", True)
    ctx.watch_task("stopped", stopped)
    ctx.stopping.set()  # ending because the service stops is no failure
    stopped.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopped
    assert "stopped" not in ctx.not_ready()


async def test_a_subscription_is_bound_once_the_server_has_it(own_nats_server: NatsServer) -> None:
    link = await NatsLink(own_nats_server.port).start()
    client = await nats.connect(link.url)
    other = await nats.connect(own_nats_server.url)
    try:
        ctx = context(client, client.jetstream())
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            received.put_nowait(msg.data)

        link.hold(b"SUB test.bound ")
        await client.subscribe("test.bound", cb=on_msg)
        bound = asyncio.create_task(ctx.subscriptions_bound())
        await link.held.wait()
        await asyncio.sleep(0.3)
        assert not bound.done()  # the SUB has not reached the server

        link.release()
        await asyncio.wait_for(bound, 30)
        await other.publish("test.bound", b"hello")
        assert await asyncio.wait_for(received.get(), 10) == b"hello"
    finally:
        await client.close()
        await other.close()
        await link.close()
