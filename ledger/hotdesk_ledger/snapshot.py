"""Read what a stream holds now, exactly once, with a short-lived pull consumer.

An ephemeral pull consumer (memory storage, no acks) is created with a filter subject;
the server answers the create request with the consumer's ``num_pending``, computed
before any message can be delivered, so a read fetches exactly that many messages and
knows it has seen everything that existed when it started, without racing later
writes. The consumer is named by the server and deleted afterwards (an inactivity
threshold removes it if the reader dies first).

On a cluster the consumer lives on one of the stream's nodes, chosen by the server,
and counts and delivers what that node's copy of the stream holds. A follower applies
writes a moment after the leader has acknowledged them, so a consumer on a follower
can miss the reader's own latest append. The consumer is therefore made again until
it sits on the stream's leader, which holds every acknowledged write (see
:func:`_consumer_on_leader`). The server the reader is connected to also learns of the
consumer's pull subject over the cluster routes a moment after the create request has
been answered: a pull sent in between finds no responder (status 503) and is sent
again, a few times, shortly after.

The event store reads ledger subjects this way and the projection runner lists a read
model's keys this way. nats-py's ``KeyValue.keys()`` is not used for that: it watches
with a push consumer and decides it has seen every key by comparing the consumer's
``num_pending`` with the messages it has dispatched so far, so when the server has
pushed everything before the client dispatched any, it reports an empty bucket.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError, ServiceUnavailableError

FETCH_BATCH = 1000
"""Messages asked for per pull request."""
NO_RESPONDER_RETRIES = 20
NO_RESPONDER_PAUSE = 0.05
"""A pull that found no responder is sent again after this long, at most
:data:`NO_RESPONDER_RETRIES` times (a second in all)."""
PLACEMENT_ATTEMPTS = 60
"""Consumers made before giving up on placing one on the stream's leader. The server
picks one of the stream's nodes, not evenly on a loaded machine: 20 misses in a row
happened once in a CI run."""

PLACEMENT_PAUSE = 0.05
"""Seconds between a consumer that missed the leader and the next one (a leadership
that is moving settles meanwhile)."""


TIMEOUT_RETRIES = 3
"""JetStream API requests that timed out are sent again this many times: while a killed
node's meta-leadership moves (a few seconds) consumer creation goes unanswered."""


class SnapshotError(Exception):
    """No consistent snapshot could be read (no consumer landed on the stream's leader)."""


async def _consumer_on_leader(
    js: JetStreamContext, stream: str, config: js_api.ConsumerConfig
) -> js_api.ConsumerInfo:
    """An ephemeral consumer on the node that leads ``stream`` (any node on a single
    server), so that its count and deliveries include every acknowledged write."""
    timeouts = 0
    for _ in range(PLACEMENT_ATTEMPTS):
        try:
            info = await js.add_consumer(stream, config)
            if info.cluster is None or not info.cluster.leader:
                return info  # not clustered: the one server holds everything
            stream_info = await js.stream_info(stream)
        except NatsTimeoutError:
            # An unanswered create may still have made its consumer: it is ephemeral
            # and goes away after its inactive threshold.
            timeouts += 1
            if timeouts > TIMEOUT_RETRIES:
                raise
            continue
        leader = stream_info.cluster.leader if stream_info.cluster else None
        if info.cluster.leader == leader:
            return info
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, info.name)
        await asyncio.sleep(PLACEMENT_PAUSE)
    raise SnapshotError(
        f"no snapshot consumer of {stream} landed on the stream's leader"
        f" in {PLACEMENT_ATTEMPTS} attempts (is a leader election going on?)"
    )


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
    info = await _consumer_on_leader(js, stream, config)
    name = info.name
    remaining = int(info.num_pending or 0)
    out: list[Msg] = []
    try:
        if remaining == 0:
            return out
        sub = await js.pull_subscribe_bind(stream=stream, name=name)
        try:
            unanswered = 0
            while remaining > 0:
                try:
                    msgs = await sub.fetch(min(remaining, FETCH_BATCH), timeout=fetch_timeout)
                except ServiceUnavailableError:
                    unanswered += 1
                    if unanswered > NO_RESPONDER_RETRIES:
                        raise
                    await asyncio.sleep(NO_RESPONDER_PAUSE)
                    continue
                out.extend(msgs)
                remaining -= len(msgs)
        finally:
            await sub.unsubscribe()
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, name)
    return out
