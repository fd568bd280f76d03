"""Webhooks to a local HTTP receiver: the signature verifies, failures are retried with
backoff, every attempt is logged, and the durable consumer delivers ledger events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import msgspec
import uvicorn
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hotdesk_contracts import streams
from hotdesk_contracts.directory import Directory, Webhook
from hotdesk_presence.webhooks import (
    DURABLE,
    Delivery,
    DeliveryLog,
    WebhookDispatcher,
    backoff,
    sign,
    verify,
)
from tests.presence.conftest import Presence
from tests.presence.factories import logged_in, logged_out, pin_rejected
from tests.support.natsserver import free_port

SECRET = "whsec-test-secret"


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    calls: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def receiver(fail_first: int = 0) -> AsyncIterator[Receiver]:
    port = free_port()
    box = Receiver(url=f"http://127.0.0.1:{port}/hook", fail_first=fail_first)

    async def hook(request: Request) -> Response:
        box.calls += 1
        if box.calls <= box.fail_first:
            return Response(status_code=500)
        box.received.append((dict(request.headers), await request.body()))
        box.arrived.set()
        return Response(status_code=204)

    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield box
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def test_the_signature_covers_timestamp_and_body() -> None:
    signature = sign(SECRET, "1700000000", b'{"a":1}')
    assert signature.startswith("sha256=")
    assert verify(SECRET, "1700000000", b'{"a":1}', signature)
    assert not verify(SECRET, "1700000001", b'{"a":1}', signature)
    assert not verify(SECRET, "1700000000", b'{"a":2}', signature)
    assert not verify("other", "1700000000", b'{"a":1}', signature)


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(30, cap=300.0) == 300.0


async def test_a_failing_receiver_gets_the_event_after_retries_and_it_verifies(
    js: JetStreamContext,
) -> None:
    async with receiver(fail_first=2) as box, httpx.AsyncClient() as client:
        hook = Webhook(name="crm", url=box.url, secret=SECRET)
        log = DeliveryLog()
        dispatcher = WebhookDispatcher(js, Directory, log, backoff_base=0.01)
        event = logged_in("HD0001", "100")
        assert await dispatcher.deliver(client, hook, event)
    assert box.calls == 3
    [(headers, body)] = box.received
    assert verify(SECRET, headers["x-hotdesk-timestamp"], body, headers["x-hotdesk-signature"])
    assert headers["x-hotdesk-event"] == "LoggedIn"
    assert msgspec.json.decode(body)["event_id"] == event.event_id
    attempts = [(d.attempt, d.status, d.ok) for d in await log.recent("crm")]
    assert attempts == [(1, 500, False), (2, 500, False), (3, 204, True)]


async def test_an_unreachable_receiver_is_given_up_after_the_last_attempt(
    js: JetStreamContext,
) -> None:
    hook = Webhook(name="gone", url=f"http://127.0.0.1:{free_port()}/hook", secret=SECRET)
    log = DeliveryLog()
    dispatcher = WebhookDispatcher(js, Directory, log, max_attempts=3, backoff_base=0.01)
    async with httpx.AsyncClient() as client:
        assert not await dispatcher.deliver(client, hook, logged_in("HD0001", "100"))
    assert [(d.attempt, d.status, d.error != "") for d in await log.recent()] == [
        (1, 0, True),
        (2, 0, True),
        (3, 0, True),
    ]


async def test_the_dispatcher_posts_filtered_ledger_events_and_the_api_lists_them(
    presence: Presence, js: JetStreamContext
) -> None:
    async with receiver() as box:
        directory = Directory(
            webhooks=[Webhook(name="crm", url=box.url, secret=SECRET, events=["LoggedOut"])]
        )
        log: DeliveryLog = presence.deps.deliveries
        dispatcher = WebhookDispatcher(js, lambda: directory, log, backoff_base=0.01)
        stopping = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stopping))
        # Delivery starts with events appended after the consumer exists.
        for _ in range(200):
            with contextlib.suppress(NotFoundError):
                await js.consumer_info(streams.LEDGER.name, DURABLE)
                break
            await asyncio.sleep(0.02)
        await presence.append(
            logged_in("HD0001", "100"), pin_rejected("100", 1), logged_out("HD0001", "100")
        )
        await asyncio.wait_for(box.arrived.wait(), 10)
        stopping.set()
        await asyncio.wait_for(task, 10)
    assert [msgspec.json.decode(b)["type"] for _, b in box.received] == ["LoggedOut"]
    listed = await presence.client.get("/api/v1/webhooks/deliveries", headers=presence.auth())
    [entry] = listed.json()["deliveries"]
    assert (entry["webhook"], entry["event_type"], entry["ok"]) == ("crm", "LoggedOut", True)


async def test_two_replicas_deliver_each_event_once(
    presence: Presence, js: JetStreamContext
) -> None:
    async with receiver() as box:
        directory = Directory(webhooks=[Webhook(name="crm", url=box.url, secret=SECRET)])
        stopping = asyncio.Event()
        replicas = [
            WebhookDispatcher(js, lambda: directory, DeliveryLog(), backoff_base=0.01)
            for _ in range(2)
        ]
        tasks = [asyncio.create_task(r.run(stopping)) for r in replicas]
        for _ in range(200):
            with contextlib.suppress(NotFoundError):
                await js.consumer_info(streams.LEDGER.name, DURABLE)
                break
            await asyncio.sleep(0.02)
        events = [logged_in(f"HD000{n}", f"10{n}") for n in range(1, 7)]
        await presence.append(*events)
        for _ in range(500):
            if len(box.received) >= len(events):
                break
            await asyncio.sleep(0.02)
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    ids = [msgspec.json.decode(b)["event_id"] for _, b in box.received]
    assert sorted(ids) == sorted(e.event_id for e in events)


async def test_the_delivery_log_is_shared_by_replicas_and_keeps_the_newest(
    js: JetStreamContext,
) -> None:
    writer = DeliveryLog(size=3, js=js)
    for attempt in range(1, 6):
        await writer.add(
            Delivery(
                webhook="crm",
                event_id="e1",
                event_type="LoggedIn",
                attempt=attempt,
                at=logged_in("HD0001", "100").at,
                status=500,
                ok=False,
            )
        )
    other_replica = DeliveryLog(size=3, js=js)
    assert [d.attempt for d in await other_replica.recent("crm")] == [3, 4, 5]
    assert await other_replica.recent("billing") == []
