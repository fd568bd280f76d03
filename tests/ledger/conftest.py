"""Ledger test fixtures.

nats-server can hand a just-deleted file-backed stream's messages to a stream
re-created under the same name straight away (seen with the session server: the
shared ``js`` fixture deletes streams at teardown and the next test re-creates
``HOTDESK_LEDGER``). The ledger tests count events exactly, so this ``js`` also
clears leftovers at setup and gives the server a moment to let go of the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext


async def _delete_streams(ctx: JetStreamContext) -> None:
    for info in await ctx.streams_info():
        await ctx.delete_stream(info.config.name)


@pytest.fixture
async def js(nc: Client) -> AsyncIterator[JetStreamContext]:
    """JetStream with no streams at the start of the test and none left after it."""
    ctx = nc.jetstream()
    await _delete_streams(ctx)
    await asyncio.sleep(0.1)
    yield ctx
    await _delete_streams(ctx)
    await asyncio.sleep(0.1)
