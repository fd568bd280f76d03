"""A desk's online state cannot get stuck: the edge that stored its registration is
killed before the registration expires, so no ``expired`` event is ever published, and
presence still shows the desk offline once the binding has lapsed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.messages import RegistrationChanged
from hotdesk_runtime.nats import ensure_jetstream
from tests.e2e.edge_process import edge_process
from tests.e2e.sipp import start_sipp
from tests.e2e.system import SCENARIOS, free_udp_port
from tests.presence.conftest import ADMIN_TOKEN, DIRECTORY
from tests.presence.console import running_presence

EXPIRES = 8
"""The registration's lifetime: long enough for the test to see the desk online and
kill the edge before the edge's own expiry sweep would announce it."""


async def desk_row(client: httpx.AsyncClient, url: str, desk: str) -> dict[str, Any]:
    response = await client.get(
        f"{url}/api/v1/desks", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    rows = {row["desk"]: row for row in response.json()["desks"]}
    return dict(rows[desk])


async def wait_online(client: httpx.AsyncClient, url: str, desk: str, online: bool) -> None:
    for _ in range(300):
        if (await desk_row(client, url, desk))["online"] is online:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{desk} never showed online={online}")


async def registration_events(js: JetStreamContext, desk: str) -> list[RegistrationChanged]:
    info = await js.stream_info(streams.EDGE.name)
    if not info.state.messages:
        return []
    sub = await js.subscribe(
        subjects.EDGE_REGISTRATION_ALL, stream=streams.EDGE.name, ordered_consumer=True
    )
    events: list[RegistrationChanged] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except TimeoutError:
                break
            event = msgspec.json.decode(msg.data, type=RegistrationChanged)
            if event.aor == desk:
                events.append(event)
    finally:
        await sub.unsubscribe()
    return events


async def test_desk_goes_offline_when_the_edge_that_registered_it_dies(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    await ensure_jetstream(js)
    text = (SCENARIOS / "register.xml").read_text()
    assert text.count("Expires: 60") == 2, "register.xml's Expires changed"
    scenario = tmp_path / "register_short.xml"
    scenario.write_text(text.replace("Expires: 60", f"Expires: {EXPIRES}"))
    desk = DIRECTORY.desks[0]
    async with (
        edge_process(nc, DIRECTORY, tmp_path, (36600, 36699)) as edge,
        running_presence(nc, js, DIRECTORY, reconcile_every=0.5) as url,
        httpx.AsyncClient() as client,
    ):
        assert (await desk_row(client, url, desk.name))["online"] is False
        sipp = await start_sipp(
            tmp_path,
            scenario,
            "-au",
            desk.name,
            "-ap",
            desk.sip_password,
            "-key",
            "desk",
            desk.name,
            "-key",
            "contact_port",
            str(free_udp_port()),
            name="register",
            remote=f"127.0.0.1:{edge.port}",
            timeout_s=10,
        )
        run = await sipp.finish(15)
        assert run.returncode == 0, run.stderr + run.messages
        await wait_online(client, url, desk.name, True)
        edge.kill()
        await wait_online(client, url, desk.name, False)
        # Nobody announced the expiry: the desk went offline by the reconciliation.
        kinds = [e.kind for e in await registration_events(js, desk.name)]
        assert kinds == ["registered"]
