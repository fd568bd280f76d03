"""Read what a stream holds now, exactly once, with a short-lived pull consumer.

An ephemeral pull consumer (memory storage, no acks) is created with a filter subject;
the server answers the create request with the consumer's ``num_pending``, computed
before any message can be delivered, so a read fetches exactly that many messages and
knows it has seen everything that existed when it started, without racing later
writes. The consumer is named by the server and deleted afterwards (an inactivity
threshold removes it if the reader dies first).

The event store reads ledger subjects this way and the projection runner lists a read
model's keys this way. nats-py's ``KeyValue.keys()`` is not used for that: it watches
with a push consumer and decides it has seen every key by comparing the consumer's
``num_pending`` with the messages it has dispatched so far, so when the server has
pushed everything before the client dispatched any, it reports an empty bucket.
"""

from __future__ import annotations

import contextlib

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

FETCH_BATCH = 1000
"""Messages asked for per pull request."""


async def read_snapshot(
    js: JetStreamContext,
    stream: str,
    filter_subject: str,
    deliver_policy: js_api.DeliverPolicy = js_api.DeliverPolicy.ALL,
    *,
    fetch_timeout: float = 5.0,
) -> list[Msg]:
    """Every message of ``stream`` matching ``filter_subject`` that exists now, in order.

    With ``DeliverPolicy.LAST_PER_SUBJECT`` only the last message of each subject.
    """
    config = js_api.ConsumerConfig(
        deliver_policy=deliver_policy,
        ack_policy=js_api.AckPolicy.NONE,
        filter_subject=filter_subject,
        mem_storage=True,
        num_replicas=1,
        # A reader that dies leaves no consumer behind for long.
        inactive_threshold=30.0,
    )
    info = await js.add_consumer(stream, config)
    name = info.name
    remaining = int(info.num_pending or 0)
    out: list[Msg] = []
    try:
        if remaining == 0:
            return out
        sub = await js.pull_subscribe_bind(stream=stream, name=name)
        try:
            while remaining > 0:
                msgs = await sub.fetch(min(remaining, FETCH_BATCH), timeout=fetch_timeout)
                out.extend(msgs)
                remaining -= len(msgs)
        finally:
            await sub.unsubscribe()
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, name)
    return out
