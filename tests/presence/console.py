"""Running the whole presence service for browser tests and the docs' screenshots."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.commands import LogIn
from hotdesk_contracts.directory import Config, Directory, HttpSettings
from hotdesk_contracts.events import Cause
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from hotdesk_presence.main import serve
from hotdesk_presence.reconcile import DEFAULT_EVERY
from hotdesk_runtime.context import ServiceContext
from tests.support.natsserver import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.asynccontextmanager
async def running_presence(
    nc: Client,
    js: JetStreamContext,
    directory: Directory,
    *,
    reconcile_every: float = DEFAULT_EVERY,
) -> AsyncIterator[str]:
    """The presence service on a free port; yields its base URL; stops it after.
    ``reconcile_every``: seconds between two checks of the desks shown online against
    the registrations bucket."""
    port = free_port()
    fields = {f: getattr(directory, f) for f in Directory.__struct_fields__}
    config = Config(**fields, admin=HttpSettings(listen="127.0.0.1", port=port))
    ctx = ServiceContext(
        name="presence",
        instance_id=f"presence-{uuid.uuid4().hex[:6]}",
        config=config,
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("presence"),
    )
    task = asyncio.create_task(serve(ctx, reconcile_every=reconcile_every))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                if task.done():
                    task.result()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError("presence did not become ready")
        yield url
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 20)


async def log_in(js: JetStreamContext, desk: str, user: str, seen_user: str | None = None) -> None:
    """A user logs in at a desk, as the IVR would do it."""
    cid = uuid.uuid4().hex
    await Ledger(EventStore(js)).execute(
        LogIn(
            command_id=cid,
            at=datetime.now(UTC),
            cause=Cause(actor=f"user:{user}", call_id=f"call-{cid}"),
            correlation_id=cid,
            desk=desk,
            user=user,
            seen_user=seen_user,
        )
    )
