"""A presence service wired to the test's nats-server, with a small directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import AdminUser, ApiToken, Desk, Directory, Extension
from hotdesk_contracts.events import DESK_EVENTS, LedgerEvent
from hotdesk_ledger.store import EventStore
from hotdesk_presence.api import AdminDeps, create_app
from hotdesk_presence.auth import token_digest
from hotdesk_presence.main import build

ADMIN_TOKEN = "t0k3n-admin-0123456789abcdef"
VIEWER_TOKEN = "t0k3n-viewer-0123456789abcdef"
_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash

DIRECTORY = Directory(
    extensions=[
        Extension(number="100", name="Ada Lovelace"),
        Extension(number="101", name="Alan Turing"),
        Extension(number="102", name="Grace Hopper"),
    ],
    desks=[
        Desk(name="HD0001", mac="805EC0000001", sip_password="x1", vendor="yealink", model="T54W"),
        Desk(name="HD0002", mac="0004F2000002", sip_password="x2", vendor="poly", model="VVX450"),
        Desk(name="HD0003", mac="000B82000003", sip_password="x3", vendor="grandstream"),
    ],
    admins=[
        AdminUser(username="alice", password_hash=_hash("alice-pass"), role="admin"),
        AdminUser(username="victor", password_hash=_hash("victor-pass"), role="viewer"),
    ],
    api_tokens=[
        ApiToken(name="script", token_hash=token_digest(ADMIN_TOKEN), role="admin"),
        ApiToken(name="wallboard", token_hash=token_digest(VIEWER_TOKEN), role="viewer"),
    ],
)


@dataclass
class Presence:
    js: JetStreamContext
    store: EventStore
    parts: dict[str, Any]
    deps: AdminDeps
    client: httpx.AsyncClient

    async def append(self, *events: LedgerEvent) -> None:
        for event in events:
            subject = (
                subjects.desk_ledger(event.desk)
                if isinstance(event, DESK_EVENTS)
                else subjects.user_ledger(event.user)
            )
            await self.store.append(subject, [event], None)

    async def settle(self) -> None:
        for runner in [*self.parts["ledger_runners"], *self.parts["bus_runners"]]:
            await runner.catch_up()

    def auth(self, token: str = ADMIN_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def presence(js: JetStreamContext) -> AsyncIterator[Presence]:
    parts = await build(js, lambda: DIRECTORY)
    deps: AdminDeps = parts["deps"]
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield Presence(js, EventStore(js), parts, deps, client)
    for runner in [*parts["ledger_runners"], *parts["bus_runners"]]:
        await runner.stop()
