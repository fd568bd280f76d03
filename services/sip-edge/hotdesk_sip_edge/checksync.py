"""The check-sync NOTIFY: tell a desk phone to fetch its configuration again.

The provisioner asks any edge (request/reply on ``subjects.EDGE_COMMAND_ANY``, queue
group) to send ``SendCheckSync``. :class:`CheckSyncSender` sends an out-of-dialog NOTIFY
(the vendors' "unsolicited" NOTIFY; Yealink, Polycom and snom all take ``Event:
check-sync`` this way) to each live contact of the desk, through its Path (RFC 3327
§5.3), and waits for each client transaction's final response or Timer F (RFC 3261
§17.1.2.2). :class:`CheckSyncResponder` is the bus adapter that answers the provisioner
with a ``CheckSyncResult``; it sends the NOTIFYs in a ``NOTIFY check-sync`` span that
continues the trace the request's headers carry (the reprovision of a login).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from hotdesk_contracts import subjects
from hotdesk_contracts.commands import EdgeCommand, SendCheckSync
from hotdesk_contracts.messages import CheckSyncResult
from hotdesk_runtime.logging import log_context
from hotdesk_runtime.telemetry import (
    DESK,
    SIP_EVENT,
    SIP_METHOD,
    SIP_STATUS_CODE,
    extract_context,
    messaging_attributes,
)

from .awaited import AwaitedTransaction
from .location import Binding, LocationStore, live
from .proxy import next_hop
from .sip.message import Headers, SipRequest
from .sip.transaction import ClientTransaction
from .sip.transport import Source
from .sip.uri import UriError, parse_uri

log = logging.getLogger("hotdesk.sip_edge.checksync")
_tracer = trace.get_tracer("hotdesk_sip_edge")

MAGIC = "z9hG4bK"
QUEUE_GROUP = "sip-edge"


class RequestNetwork(Protocol):
    """What sending a request needs from the edge."""

    host: str
    port: int

    async def send_request(self, request: SipRequest, target: Source) -> bool:
        """Send a request to ``target``."""
        ...

    def track(self, branch: str, tx: ClientTransaction, target: Source) -> None:
        """Run a client transaction's retransmission and timeout timers."""
        ...


def binding_target(request: SipRequest, binding: Binding) -> Source:
    """Pre-load the binding's Path as Route (RFC 3327 §5.3) and pick the next hop: the
    first Path hop, else where the REGISTER came from when the phone is behind NAT or on
    a TCP/TLS flow (RFC 5626 §5.3), else the contact itself."""
    if binding.path:
        for entry in reversed(binding.path):
            request.headers.add("Route", entry, first=True)
        first = entry_uri(binding.path[0])
        return next_hop(parse_uri(first), binding.transport)
    if binding.behind_nat or binding.transport != "UDP":
        return Source(binding.transport, binding.source_host, binding.source_port)
    try:
        return next_hop(parse_uri(binding.uri), binding.transport)
    except UriError:
        return Source(binding.transport, binding.source_host, binding.source_port)


def entry_uri(entry: str) -> str:
    """The URI inside a ``<uri>;params`` header entry."""
    text = entry.strip()
    if "<" in text and ">" in text:
        return text[text.index("<") + 1 : text.index(">")]
    return text.split(";")[0]


def best_status(statuses: list[int]) -> int:
    """The result of several contacts: a 2xx wins, else the lowest final status, else 0
    (nobody answered)."""
    answered = [s for s in statuses if s >= 200]
    success = [s for s in answered if s < 300]
    if success:
        return min(success)
    return min(answered) if answered else 0


class CheckSyncSender:
    """Sends the check-sync NOTIFY to every live contact of a desk."""

    def __init__(
        self,
        *,
        network: Callable[[], RequestNetwork],
        locations: LocationStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._network = network
        self._locations = locations
        self._clock = clock

    def notify_request(self, desk: str, event: str, binding: Binding) -> SipRequest:
        """The NOTIFY for one contact (without Via; RFC 6665 §4.2.1 fields, with
        ``Subscription-State: terminated`` since no subscription exists)."""
        net = self._network()
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:hotdesk@{net.host}>;tag={secrets.token_hex(5)}")
        headers.add("To", f"<sip:{desk}@{net.host}>")
        headers.add("Call-ID", f"{secrets.token_hex(12)}@{net.host}")
        headers.add("CSeq", "1 NOTIFY")
        headers.add("Contact", f"<sip:hotdesk@{net.host}:{net.port}>")
        headers.add("Event", event)
        headers.add("Subscription-State", "terminated")
        return SipRequest(headers, b"", "NOTIFY", binding.uri)

    async def send(self, desk: str, event: str) -> tuple[int, int]:
        """Notify every live contact of ``desk``; ``(best final status, contacts)``."""
        bindings, _ = await self._locations.load(desk)
        current = live(bindings, self._clock())
        if not current:
            return 0, 0
        waits = [await self._send_one(desk, event, b) for b in current]
        statuses = list(await asyncio.gather(*waits))
        return best_status(statuses), len(current)

    async def _send_one(self, desk: str, event: str, binding: Binding) -> asyncio.Future[int]:
        net = self._network()
        request = self.notify_request(desk, event, binding)
        try:
            target = binding_target(request, binding)
        except UriError:
            failed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            failed.set_result(0)
            return failed
        branch = MAGIC + secrets.token_hex(8)
        request.headers.add(
            "Via",
            f"SIP/2.0/{target.transport} {net.host}:{net.port};branch={branch};rport",
            first=True,
        )
        tx = AwaitedTransaction(
            request.serialize(), "NOTIFY", self._clock(), reliable=target.transport != "UDP"
        )
        if not await net.send_request(request, target):
            tx.final.set_result(0)
            return tx.final
        net.track(branch, tx, target)
        return tx.final


class CheckSyncResponder:
    """Answers ``SendCheckSync`` requests on ``EDGE_COMMAND_ANY`` (one edge replica
    per request, by queue group) with a ``CheckSyncResult``."""

    def __init__(self, nc: Client, sender: CheckSyncSender, origin: str) -> None:
        self.nc = nc
        self.sender = sender
        self.origin = origin
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Subscribe (queue group ``sip-edge``)."""
        self._sub = await self.nc.subscribe(
            subjects.EDGE_COMMAND_ANY, queue=QUEUE_GROUP, cb=self._on_msg
        )

    async def _on_msg(self, msg: Msg) -> None:
        # Timer F may take 32 s: answer from a task so other requests are not held up.
        task = asyncio.ensure_future(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            command = msgspec.json.decode(msg.data, type=EdgeCommand)
        except msgspec.ValidationError as exc:
            log.error("undecodable edge command", extra={"error": str(exc)})
            return
        if not isinstance(command, SendCheckSync):
            log.info("command not for any edge", extra={"type": type(command).__name__})
            return
        with (
            _tracer.start_as_current_span(
                "NOTIFY check-sync",
                context=extract_context(msg.headers),
                kind=SpanKind.CLIENT,
                attributes={
                    **messaging_attributes(msg.subject, "process"),
                    SIP_METHOD: "NOTIFY",
                    SIP_EVENT: command.event,
                    DESK: command.desk,
                    "hotdesk.reprovision_id": command.reprovision_id,
                },
            ) as span,
            log_context(desk=command.desk),
        ):
            status, contacts = await self.sender.send(command.desk, command.event)
            span.set_attribute(SIP_STATUS_CODE, status)
            span.set_attribute("hotdesk.contacts", contacts)
            log.info(
                "check-sync sent",
                extra={"desk": command.desk, "status": status, "contacts": contacts},
            )
        if msg.reply:
            result = CheckSyncResult(
                at=datetime.now(UTC),
                origin=self.origin,
                desk=command.desk,
                reprovision_id=command.reprovision_id,
                status=status,
                contacts=contacts,
            )
            await msg.respond(msgspec.json.encode(result))

    async def close(self) -> None:
        """Unsubscribe and drop pending answers."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        for task in list(self._tasks):
            task.cancel()
