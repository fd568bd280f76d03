"""Reading whole read models from their buckets on a real nats-server: every read sees
every key, deleted keys read as absent, and reads leave no consumer behind."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext

from hotdesk_contracts import streams, subjects
from hotdesk_presence.projections import DESK_STATUS_BUCKET, BusProjectionRunner, DeskStatusFold
from hotdesk_presence.readmodels import ReadModels, bucket_keys
from hotdesk_runtime.nats import ensure_jetstream
from tests.presence.factories import registration


async def test_repeated_list_reads_see_every_desk_and_make_no_consumers(
    js: JetStreamContext,
) -> None:
    await ensure_jetstream(js)
    desks = [f"HD{n:04d}" for n in range(1, 41)]
    for desk in desks:
        await js.publish(
            subjects.edge_registration(desk, "registered"),
            msgspec.json.encode(registration(desk)),
        )
    runner = BusProjectionRunner(js, DeskStatusFold())
    await runner.catch_up()
    await runner.stop()
    read = ReadModels(js)
    stream = f"KV_{DESK_STATUS_BUCKET}"
    consumers = (await js.stream_info(stream)).state.consumer_count
    # As a console or a script polling the desk list several times a second.
    for _ in range(200):
        statuses = await read.statuses()
        assert sorted(statuses) == desks
        assert all(s.online for s in statuses.values())
    assert (await js.stream_info(stream)).state.consumer_count == consumers


async def test_keys_of_a_bucket_with_dotted_and_deleted_keys(js: JetStreamContext) -> None:
    await ensure_jetstream(js)
    kv = await js.key_value(streams.HISTORY.bucket)
    assert await bucket_keys(js, streams.HISTORY.bucket) == []
    await kv.put("desk.HD0001", b"{}")
    await kv.put("user.100", b"{}")
    await kv.put("user.101", b"{}")
    await kv.delete("user.101")
    assert sorted(await bucket_keys(js, streams.HISTORY.bucket)) == [
        "desk.HD0001",
        "user.100",
        "user.101",
    ]
    # A deleted key is listed but reads as nothing.
    assert (await ReadModels(js).history("user.101")).entries == []
