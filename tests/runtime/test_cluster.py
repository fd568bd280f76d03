"""A 3-node nats-server cluster on loopback: JetStream set up at R3 from the contracts'
definitions, clients that know every node, and a node killed under them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.directory import Config, NatsSettings
from hotdesk_ledger.snapshot import read_snapshot
from hotdesk_presence.webhooks import DELIVERIES_STREAM, Delivery, DeliveryLog
from hotdesk_runtime.cluster import LocalCluster
from hotdesk_runtime.nats import NatsError, connect, ensure_jetstream, server_urls, stream_config


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    nodes = LocalCluster(tmp_path / "nats", 3, name="hotdesk-test")
    nodes.start()
    yield nodes
    nodes.stop()


def test_stream_config_is_the_contracts_definition() -> None:
    for spec in streams.STREAMS:
        wire = stream_config(spec, replicas=3).as_dict()
        for key, value in streams.stream_api_config(spec, replicas=3).items():
            assert wire[key] == value, (spec.name, key)
    assert stream_config(streams.LEDGER).allow_direct


def test_a_url_list_is_split_into_servers() -> None:
    assert server_urls("nats://a:4222, nats://b:4222,") == ["nats://a:4222", "nats://b:4222"]
    assert server_urls("nats://a:4222") == ["nats://a:4222"]
    with pytest.raises(NatsError, match="no NATS server"):
        server_urls(" , ")


async def _connect(cluster: LocalCluster) -> tuple[Client, JetStreamContext]:
    """A client given every node's URL, as services get ``nats.url``."""
    config = Config(nats=NatsSettings(url=cluster.url, replicas=3))
    return await connect(config, initial_attempts=3, reconnect_wait=0.2)


async def test_every_stream_bucket_and_store_is_replicated_three_times(
    cluster: LocalCluster,
) -> None:
    nc, js = await _connect(cluster)
    try:
        await ensure_jetstream(js, 3)
        names = [s.name for s in streams.STREAMS]
        names += [f"KV_{kv.bucket}" for kv in streams.KEY_VALUES]
        names += [f"OBJ_{o.bucket}" for o in streams.OBJECT_STORES]
        for name in names:
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3, name
            assert info.cluster is not None, name
            assert len(info.cluster.replicas or []) == 2, name
        ledger = await js.stream_info(streams.LEDGER.name)
        assert ledger.config.allow_direct
        assert ledger.config.deny_delete
        assert ledger.config.deny_purge
    finally:
        await nc.close()


async def test_the_webhook_delivery_log_is_replicated_like_the_rest(
    cluster: LocalCluster,
) -> None:
    nc, js = await _connect(cluster)
    try:
        log = DeliveryLog(js=js, replicas=3)
        await log.add(
            Delivery(
                webhook="crm",
                event_id="e1",
                event_type="LoggedIn",
                attempt=1,
                at=datetime.now(UTC),
                status=200,
                ok=True,
            )
        )
        info = await js.stream_info(DELIVERIES_STREAM)
        assert info.config.num_replicas == 3
        assert info.state.messages == 1
    finally:
        await nc.close()


async def test_an_object_store_made_with_one_replica_grows_to_three(
    cluster: LocalCluster,
) -> None:
    nc, js = await _connect(cluster)
    try:
        await js.create_object_store(streams.PROMPTS.bucket)
        done = await ensure_jetstream(js, 3)
        assert done[streams.PROMPTS.bucket] == "updated"
        info = await js.stream_info(f"OBJ_{streams.PROMPTS.bucket}")
        assert info.config.num_replicas == 3
    finally:
        await nc.close()


async def test_the_ledger_takes_appends_after_its_leader_is_killed(
    cluster: LocalCluster,
) -> None:
    nc, js = await _connect(cluster)
    try:
        await ensure_jetstream(js, 3)
        desk = subjects.desk_ledger("HD0001")
        await js.publish(desk, b"before", headers={"Nats-Msg-Id": "before"})
        info = await js.stream_info(streams.LEDGER.name)
        assert info.cluster is not None
        assert info.cluster.leader
        leader = cluster.node(info.cluster.leader)
        leader.kill()
        # A new leader is elected among the two left; appends wait for it.
        for _ in range(300):
            try:
                ack = await js.publish(desk, b"after", headers={"Nats-Msg-Id": "after"}, timeout=1)
                break
            except Exception:  # no leader yet, or our connection moves to another node
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("no append succeeded after the leader was killed")
        assert ack.seq == 2
        assert nc.is_connected
        assert nc.connected_url is not None
        assert nc.connected_url.port != leader.port
        msgs = await read_snapshot(js, streams.LEDGER.name, desk)
        assert [m.data for m in msgs] == [b"before", b"after"]
    finally:
        await nc.close()


async def test_a_snapshot_read_on_a_cluster_sees_the_readers_own_last_append(
    cluster: LocalCluster,
) -> None:
    """A consumer on a follower would count what that follower has applied, which can
    lag the acknowledged appends; and its pull subject reaches the reader's server a
    moment after it is made. The reader sees every append it was acknowledged."""
    nc, js = await _connect(cluster)
    try:
        await ensure_jetstream(js, 3)
        for n in range(1, 41):
            await js.publish(subjects.desk_ledger(f"HD{n:04d}"), str(n).encode())
            msgs = await read_snapshot(
                js,
                streams.LEDGER.name,
                subjects.LEDGER_DESKS,
                deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            )
            assert [m.data for m in msgs] == [str(k).encode() for k in range(1, n + 1)]
    finally:
        await nc.close()
