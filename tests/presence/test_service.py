"""The presence service as a whole: live desk events over SSE for a token, and a clean
stop even while a stream is open."""

from __future__ import annotations

import asyncio

import httpx
import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.presence.conftest import ADMIN_TOKEN, DIRECTORY
from tests.presence.console import log_in, running_presence


async def test_sse_pushes_a_desk_change_and_the_service_stops_with_streams_open(
    nc: Client, js: JetStreamContext
) -> None:
    received: list[dict[str, object]] = []
    async with httpx.AsyncClient() as client:
        async with running_presence(nc, js, DIRECTORY) as url:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            request = client.build_request("GET", f"{url}/api/v1/events", headers=headers)
            stream = await client.send(request, stream=True)
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 5) == "retry: 2000"
            await log_in(js, "HD0002", "101")
            event = ""
            while not received:
                line = await asyncio.wait_for(anext(lines), 10)
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "desk":
                    row = msgspec.json.decode(line.removeprefix("data: "))
                    if row["desk"] == "HD0002" and row["state"] == "logged_in":
                        received.append(row)
        # The service stopped (bounded inside running_presence) with the stream open.
        await stream.aclose()
    assert received[0]["user"] == "101"
    assert received[0]["name"] == "Alan Turing"
