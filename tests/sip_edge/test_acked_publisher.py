"""JetStream publishes with their acks matched on one inbox: each caller gets its own
message's sequence, and the errors ``JetStreamContext.publish`` would raise."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError

from hotdesk_sip_edge.location import AckedPublisher

STREAM = "ACKED_PUBLISHER_TEST"


async def _stream(js: JetStreamContext) -> None:
    await js.add_stream(name=STREAM, subjects=["acked.>"])


async def test_concurrent_publishes_each_get_the_sequence_of_their_own_message(
    js: JetStreamContext, nc: Client
) -> None:
    await _stream(js)
    publisher = AckedPublisher(nc)
    await publisher.start()
    seqs = await asyncio.gather(
        *(publisher.publish(f"acked.k{n}", f"m{n}".encode(), {}) for n in range(200))
    )
    assert sorted(seqs) == list(range(1, 201))
    for n in (0, 57, 199):
        stored = await js.get_msg(STREAM, seqs[n])
        assert stored.data == f"m{n}".encode()


async def test_a_failed_expected_sequence_check_is_jetstreams_api_error(
    js: JetStreamContext, nc: Client
) -> None:
    await _stream(js)
    publisher = AckedPublisher(nc)
    first = await publisher.publish("acked.one", b"a", {"Nats-Expected-Last-Subject-Sequence": "0"})
    with pytest.raises(APIError) as info:
        await publisher.publish("acked.one", b"b", {"Nats-Expected-Last-Subject-Sequence": "0"})
    assert info.value.err_code == 10071
    second = await publisher.publish(
        "acked.one", b"c", {"Nats-Expected-Last-Subject-Sequence": str(first)}
    )
    assert second > first


async def test_a_subject_no_stream_takes_has_no_responders(nc: Client) -> None:
    publisher = AckedPublisher(nc)
    await publisher.start()
    with pytest.raises(NoStreamResponseError):
        await publisher.publish("nobody.stores.this", b"x", {})


async def test_an_ack_that_never_comes_times_out_and_is_forgotten(nc: Client) -> None:
    # A plain subscriber takes the message and never answers, as a stream that lost it
    # would not.
    async def silent(_msg: Msg) -> None:
        return None

    await nc.subscribe("silent.subject", cb=silent)
    publisher = AckedPublisher(nc, timeout=0.5)
    await publisher.start()
    with pytest.raises(NatsTimeoutError):
        await asyncio.wait_for(publisher.publish("silent.subject", b"x", {}), 10)
    assert not publisher._waiting
