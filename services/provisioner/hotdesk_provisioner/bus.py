"""NATS adapters: following the desk ledger, publishing provisioning events."""

from __future__ import annotations

import logging

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
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


async def follow_desk_ledger(js: JetStreamContext, seats: DeskSeats) -> Subscription:
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


async def publish_unknown_device(js: JetStreamContext, seen: UnknownDeviceSeen) -> None:
    """Record an unknown phone for admins on the provisioning stream."""
    await js.publish(subjects.PROVISIONING_UNKNOWN_DEVICE, encode_message(seen))
