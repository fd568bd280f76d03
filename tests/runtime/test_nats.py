"""JetStream setup and the embedded server, against real nats-server processes."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.directory import Config, NatsSettings
from hotdesk_runtime.nats import EmbeddedNats, NatsError, connect, ensure_jetstream, nats_url
from tests.support.natsserver import NatsServer, free_port


async def test_ensure_jetstream_creates_everything_and_is_idempotent(
    js: JetStreamContext,
) -> None:
    first = await ensure_jetstream(js)
    assert set(first.values()) == {"created"}
    second = await ensure_jetstream(js)
    assert set(second.values()) <= {"updated", "exists"}
    names = {info.config.name for info in await js.streams_info()}
    assert {s.name for s in streams.STREAMS} <= names
    assert {f"KV_{kv.bucket}" for kv in streams.KEY_VALUES} <= names
    assert {f"OBJ_{o.bucket}" for o in streams.OBJECT_STORES} <= names
    ledger = await js.stream_info(streams.LEDGER.name)
    assert ledger.config.deny_delete
    registrations = await js.stream_info(f"KV_{streams.REGISTRATIONS.bucket}")
    assert registrations.config.allow_msg_ttl


async def test_unknown_device_reports_are_bounded_with_the_oldest_dropped(
    js: JetStreamContext,
) -> None:
    await ensure_jetstream(js)
    info = await js.stream_info(streams.PROVISIONING.name)
    assert info.config.max_msgs_per_subject == streams.PROVISIONING.max_msgs_per_subject > 0
    assert info.config.max_bytes == streams.PROVISIONING.max_bytes > 0
    assert info.config.discard == js_api.DiscardPolicy.OLD
    limit = streams.PROVISIONING.max_msgs_per_subject
    for n in range(limit + 20):
        await js.publish(subjects.PROVISIONING_UNKNOWN_DEVICE, str(n).encode())
    info = await js.stream_info(streams.PROVISIONING.name)
    assert info.state.messages == limit
    last = await js.get_last_msg(streams.PROVISIONING.name, subjects.PROVISIONING_UNKNOWN_DEVICE)
    assert last.data == str(limit + 19).encode()


async def test_embedded_server_keeps_jetstream_data_across_restarts(tmp_path: Path) -> None:
    config = Config(nats=NatsSettings(data_dir=str(tmp_path / "nats"), embedded_port=free_port()))
    server = EmbeddedNats.from_config(config)
    server.start()
    try:
        nc, js = await connect(config, initial_attempts=3)
        await ensure_jetstream(js)
        await js.publish(subjects.desk_ledger("HD0001"), b"{}")
        await nc.close()
        server.stop()
        server.start()
        nc, js = await connect(config, initial_attempts=3)
        info = await js.stream_info(streams.LEDGER.name)
        assert info.state.messages == 1
        await nc.close()
    finally:
        server.stop()
    assert not server.running()


async def test_connect_uses_the_configured_url(nats_server: NatsServer) -> None:
    url = nats_server.url
    config = Config(nats=NatsSettings(url=url))
    assert nats_url(config) == url
    nc, _ = await connect(config, initial_attempts=1)
    assert nc.is_connected
    await nc.close()


async def test_connect_gives_up_after_the_given_attempts() -> None:
    config = Config(nats=NatsSettings(url=f"nats://127.0.0.1:{free_port()}"))
    with pytest.raises(NatsError, match="cannot reach NATS"):
        await connect(config, initial_attempts=2, reconnect_wait=0.1)


async def test_a_connection_survives_a_server_restart(own_nats_server: NatsServer) -> None:
    config = Config(nats=NatsSettings(url=own_nats_server.url))
    nc, _ = await connect(config, reconnect_wait=0.1)
    sub = await nc.subscribe("hotdesk.test.ping")
    own_nats_server.restart()
    # The client notices the restart only once its loop runs again: keep pinging
    # until a message makes the round trip through the new server process.
    for _ in range(100):
        await nc.publish("hotdesk.test.ping", b"after restart")
        try:
            msg = await sub.next_msg(timeout=0.2)
        except nats.errors.TimeoutError:
            continue
        assert msg.data == b"after restart"
        break
    else:
        raise AssertionError("no round trip after the restart")
    assert nc.stats["reconnects"] >= 1
    await nc.close()
