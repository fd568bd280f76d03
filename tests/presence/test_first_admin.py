"""A first start without any admin prints a generated password once; restarts reuse it."""

from __future__ import annotations

import re

import httpx
import pytest
from nats.js import JetStreamContext

from hotdesk_contracts.directory import Directory
from hotdesk_presence.api import create_app
from hotdesk_presence.main import build


async def test_the_generated_admin_is_printed_once_and_can_sign_in_after_a_restart(
    js: JetStreamContext, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = Directory()
    await build(js, lambda: empty)
    printed = capsys.readouterr().out
    match = re.search(r"user 'admin', password '([^']+)'", printed)
    assert match is not None
    password = match.group(1)

    restarted = await build(js, lambda: empty)  # a second start, or another replica
    assert password not in capsys.readouterr().out
    transport = httpx.ASGITransport(app=create_app(restarted["deps"]))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        ok = await client.post("/api/v1/session", json={"username": "admin", "password": password})
        assert ok.status_code == 200
        assert ok.json()["role"] == "admin"
        bad = await client.post("/api/v1/session", json={"username": "admin", "password": "x"})
        assert bad.status_code == 401
