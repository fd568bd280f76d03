"""NATS adapters: following the desk ledger, publishing provisioning events."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from hotdesk_contracts import subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event
from hotdesk_contracts.messages import ProvisioningEvent, UnknownDeviceSeen

from .seats import DeskSeats

log = logging.getLogger("hotdesk.provisioner.bus")

_encoder = msgspec.json.Encoder()


def encode_message(message: ProvisioningEvent) -> bytes:
    """JSON bytes of a provisioning bus event."""
    return _encoder.encode(message)


async def follow_desk_ledger(
    js: JetStreamContext, seats: DeskSeats
) -> JetStreamContext.PushSubscription:
    """Keep ``seats`` up to date from ``hotdesk.ledger.desk.*``, replaying from the start.

    An ordered consumer: ephemeral, flow-controlled, recreated by the client after a gap,
    so every replica of the server sees every desk event in order.
    """

    async def apply(msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except EventDecodeError as exc:
            log.error("undecodable ledger event", extra={"subject": msg.subject, "error": str(exc)})
            return
        seats.apply(event, msg.metadata.sequence.stream)

    return await js.subscribe(
        subjects.LEDGER_DESKS,
        cb=apply,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )


async def caught_up(sub: JetStreamContext.PushSubscription, timeout: float) -> bool:
    """Wait until ``sub`` has handed over every message its stream held (at most
    ``timeout`` seconds); ``False`` when it had not by then.

    A replica that serves before it has replayed the ledger would hand a phone its
    config for an older seat, and that fetch would not match the reprovision."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            info = await sub.consumer_info()
        except Exception:  # The ordered consumer may be being recreated: ask again.
            info = None
        if info is not None and info.num_pending == 0 and sub.pending_msgs == 0:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)


async def publish_unknown_device(js: JetStreamContext, seen: UnknownDeviceSeen) -> None:
    """Record an unknown phone for admins on the provisioning stream."""
    await js.publish(subjects.PROVISIONING_UNKNOWN_DEVICE, encode_message(seen))
