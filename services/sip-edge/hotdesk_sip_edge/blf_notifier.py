"""BLF at the edge: SUBSCRIBE for ``Event: dialog`` in, dialog-info NOTIFYs out.

:class:`BlfNotifier` is the SIP adapter around the pure subscription core in
:mod:`.blf`: it digest-authenticates each SUBSCRIBE as the registrar does (401 with
``WWW-Authenticate``, RFC 6665 §4.2.1.1 lets a notifier authenticate like any UAS),
refuses other event packages with 489 Bad Event and ``Allow-Events``, answers, and sends
every NOTIFY the core asks for with a client transaction (retransmitted over UDP).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Protocol

from .auth import Authenticator, PasswordLookup, Verdict
from .blf.notify import (
    NotifyWire,
    SubscribeFieldsError,
    notify_wire,
    subscribe_request,
    subscribe_response,
)
from .blf.subscriptions import (
    EVENT_PACKAGE,
    NotifyToSend,
    SubscriptionKey,
    Subscriptions,
)
from .proxy import next_hop
from .sip.headers import HeaderError, Via, parse_name_addr
from .sip.message import SipRequest, SipResponse, response_to
from .sip.transaction import Action, ClientTransaction, TimedOut
from .sip.transport import Source
from .sip.uri import UriError, parse_uri

log = logging.getLogger("hotdesk.sip_edge.blf")

MAGIC = "z9hG4bK"
ANSWER_BYTES = 2048
"""What one unread 200 OK to a NOTIFY takes of a UDP socket's receive buffer as the
kernel counts it (its datagram and bookkeeping: ~1.3 KiB for a 330-byte answer on
Linux), rounded up."""


class Datagrams(Protocol):
    """Sends bytes to a resolved target (the edge's transport)."""

    def send_to(self, data: bytes, target: Source) -> bool:
        """Send ``data`` to ``target`` at once; False when it could not go."""
        ...


class NotifyNetwork(Protocol):
    """What the notifier needs from the edge."""

    host: str
    port: int

    @property
    def transport(self) -> Datagrams:
        """The edge's transport, for NOTIFYs over UDP to an IP address."""
        ...

    async def send_serialized(self, data: bytes, target: Source) -> bool:
        """Send a request already in wire form to ``target``."""
        ...

    def track(self, branch: str, tx: ClientTransaction, target: Source) -> None:
        """Run a client transaction's retransmission and timeout timers."""
        ...


def event_package(request: SipRequest) -> str:
    """The package name of the request's ``Event`` header ('' when absent)."""
    value = request.headers.get("Event") or ""
    return value.split(";", 1)[0].strip().lower()


class BlfNotifier:
    """Serves SUBSCRIBE requests for BLF keys and sends their NOTIFYs."""

    def __init__(
        self,
        *,
        subscriptions: Subscriptions,
        auth: Callable[[], Authenticator],
        passwords: PasswordLookup,
        network: Callable[[], NotifyNetwork],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        receive_buffer: Callable[[], int] = lambda: 0,
    ) -> None:
        self.subscriptions = subscriptions
        self._auth = auth
        self._passwords = passwords
        self._network = network
        self._clock = clock
        self._monotonic = monotonic
        self._receive_buffer = receive_buffer
        self.unanswered = 0
        """NOTIFYs sent whose transaction has not ended yet (no final answer read, no
        Timer F)."""
        self._sources: dict[SubscriptionKey, Source] = {}
        self._routes: dict[SubscriptionKey, _Route] = {}
        # Branches unique across space and time (RFC 3261 §8.1.1.7) without a call to
        # the OS's random source per NOTIFY: a random prefix per notifier, a counter.
        self._branch_prefix = f"{MAGIC}{secrets.token_hex(8)}."
        self._branches = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: SipRequest, source: Source) -> SipResponse:
        """Answer a SUBSCRIBE (new, refresh or unsubscribe) and send the NOTIFY that
        follows a 200 (RFC 6665 §4.2.2)."""
        net = self._network()
        if event_package(request) != EVENT_PACKAGE:
            refusal = response_to(request, 489, "Bad Event", to_tag=_tag())
            refusal.headers.add("Allow-Events", EVENT_PACKAGE)
            return refusal
        verdict = self._auth().check(
            request, "Authorization", self._passwords, source.host, self._clock()
        )
        if verdict.verdict is Verdict.CHALLENGE:
            challenge = response_to(request, 401, "Unauthorized", to_tag=_tag())
            for value in verdict.challenges:
                challenge.headers.add("WWW-Authenticate", value)
            return challenge
        if verdict.verdict is Verdict.BAD_REQUEST:
            return response_to(request, 400, "Bad Request", to_tag=_tag())
        if verdict.verdict is Verdict.FORBIDDEN:
            return response_to(request, 403, "Forbidden", to_tag=_tag())
        try:
            extension = parse_uri(request.uri).user_unescaped()
            fields = subscribe_request(
                request,
                extension=extension,
                entity_uri=f"sip:{extension}@{net.host}",
                authenticated=True,
            )
        except SubscribeFieldsError as exc:
            return response_to(request, exc.status, exc.reason, to_tag=_tag())
        except UriError:
            return response_to(request, 416, "Unsupported URI Scheme", to_tag=_tag())
        outcome = self.subscriptions.subscribe(fields, self._monotonic())
        response = subscribe_response(request, outcome, contact=f"sip:{net.host}:{net.port}")
        notify = outcome.notify
        if notify is not None:
            key = notify.subscription.key
            if not notify.terminated:
                # NOTIFYs go where the SUBSCRIBE came from: the phone may be behind NAT
                # or on a TCP flow (RFC 3581 §4, RFC 5626 §5.3).
                self._sources[key] = source
            # Sent from a task: it runs once the edge has put this 200 on the wire, so
            # the phone sees the 200 before the NOTIFY (RFC 6665 §4.2.2).
            self._spawn(self.send(notify))
        log.info(
            "BLF subscribe",
            extra={
                "call_id": request.call_id,
                "ext": fields.extension,
                "status": outcome.status,
                "subscriber": verdict.identity,
            },
        )
        return response

    async def send(self, notify: NotifyToSend) -> None:
        """Send one NOTIFY within its subscription's dialog (RFC 3261 §12.2.1.1)."""
        net = self._network()
        sub = notify.subscription
        key = sub.key
        source = self._sources.get(key)
        route = self._routes.get(key)
        if (
            route is None
            or (route.source is not source and route.source != source)
            or not route.wire.fits(notify)
        ):
            route = self._route(notify, source, net)
            self._routes[key] = route
        terminated = notify.terminated
        if terminated:
            self._sources.pop(key, None)
            self._routes.pop(key, None)
        branch = f"{self._branch_prefix}{next(self._branches):x}"
        data = route.wire.render(notify, f"{route.via_head};branch={branch};rport")
        target = route.target
        # A datagram to an address needs neither a lookup nor a connection: nothing to
        # await per NOTIFY in a fan-out.
        sent = target is not None and (
            net.transport.send_to(data, target)
            if route.direct
            else await net.send_serialized(data, target)
        )
        if target is None or not sent:
            log.warning("BLF NOTIFY not sent", extra={"call_id": key.call_id})
            return
        tx = _NotifyTransaction(
            data,
            self._clock(),
            reliable=target.transport != "UDP",
            notifier=self,
            key=None if terminated else key,
        )
        self.unanswered += 1
        net.track(branch, tx, target)

    def room(self) -> bool:
        """Whether the answers to more NOTIFYs would fit the edge's UDP receive buffer
        unread (``receive_buffer``: its size in bytes as the kernel granted it), with
        those of every NOTIFY still unanswered counted in."""
        return (self.unanswered + 1) * ANSWER_BYTES <= self._receive_buffer()

    def _route(self, notify: NotifyToSend, source: Source | None, net: NotifyNetwork) -> _Route:
        """How the NOTIFYs of ``notify``'s dialog go out, worked out once per dialog
        state (a refresh may move the remote target or the source)."""
        transport = source.transport if source is not None else "UDP"
        wire = notify_wire(notify, contact=f"sip:{net.host}:{net.port}")
        target = _target(wire, source, transport)
        return _Route(
            source=source,
            wire=wire,
            via_head=str(Via(transport, net.host, net.port)),
            target=target,
            direct=target is not None and target.transport == "UDP" and _is_address(target.host),
        )

    def _answered(self, key: SubscriptionKey | None, status: int) -> None:
        """RFC 6665 §4.2.2: a NOTIFY answered 481 (the subscriber forgot the dialog) or
        never answered (Timer F) ends the subscription (``key``: None for a final
        NOTIFY)."""
        self.unanswered -= 1
        if key is not None and status in (0, 408, 481):
            log.info("BLF subscriber gone", extra={"call_id": key.call_id, "status": status})
            self.subscriptions.drop(key)
            self._sources.pop(key, None)
            self._routes.pop(key, None)

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """End every subscription with a final NOTIFY (``deactivated``: subscribe again,
        another replica serves it, RFC 6665 §4.1.3)."""
        for notify in self.subscriptions.terminate_all(self._monotonic(), "deactivated"):
            await self.send(notify)
        for task in list(self._tasks):
            task.cancel()


class _NotifyTransaction(ClientTransaction):
    """A NOTIFY's non-INVITE client transaction that tells its notifier how it ended:
    the final status, or 0 when Timer F fired (RFC 3261 §17.1.2.2).

    A fan-out keeps a thousand of these through Timer K; calling back directly rather
    than through a future and a closure per NOTIFY leaves fewer objects for the garbage
    collector to walk (its full collections paused the edge for ~30 ms).
    """

    def __init__(
        self,
        request: bytes,
        now: float,
        *,
        reliable: bool,
        notifier: BlfNotifier,
        key: SubscriptionKey | None,
    ) -> None:
        super().__init__(request, "NOTIFY", now, reliable=reliable)
        self._notifier: BlfNotifier | None = notifier
        self._key = key

    def receive(self, status: int, now: float) -> bool:
        fresh = super().receive(status, now)
        if fresh and status >= 200:
            self._ended(status)
        return fresh

    def fire(self, now: float) -> list[Action]:
        actions = super().fire(now)
        if any(isinstance(action, TimedOut) for action in actions):
            self._ended(0)
        return actions

    def _ended(self, status: int) -> None:
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier._answered(self._key, status)


@dataclass(frozen=True, slots=True)
class _Route:
    """A subscription dialog's NOTIFY path: its wire form, Via and first hop."""

    source: Source | None
    """Where the SUBSCRIBE came from when the route was made."""
    wire: NotifyWire
    via_head: str
    """This hop's Via up to the branch parameter."""
    target: Source | None
    direct: bool
    """Whether ``target`` is a UDP address the transport sends to as it is."""


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _target(wire: NotifyWire, source: Source | None, transport: str) -> Source | None:
    """The first Route when there is one, else where the SUBSCRIBE came from (the phone
    may be behind NAT or on a TCP flow), else the Request-URI."""
    with contextlib.suppress(HeaderError, UriError):
        first = parse_name_addr(wire.first_route) if wire.first_route is not None else None
        if first is not None and first.uri is not None:
            return next_hop(first.uri, transport)
        if source is not None:
            return source
        return next_hop(parse_uri(wire.request_uri), transport)
    return None


def _tag() -> str:
    return secrets.token_hex(5)
