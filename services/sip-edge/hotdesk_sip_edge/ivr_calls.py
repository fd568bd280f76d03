"""The edge as the UAS of calls to the hot-desk codes (``*77*<ext>*``, ``*77*5*``).

:class:`IvrCalls` answers such an INVITE itself (RFC 3261 §13.3), opens the call's media
through the IVR bridge, keeps the dialog (§12.1.1) and serves the phone's in-dialog
requests (ACK, INFO, BYE, re-INVITE, OPTIONS) until one side hangs up. When the IVR
hangs up, it sends a UAS-originated BYE (§15.1.1) inside that dialog with a client
transaction, so it is retransmitted over UDP until answered.

Whether a logout came from the provisioned logout key is decided by the Request-URI
alone: the key dials ``config.sip.logout_key_uri``; no header is trusted for it.

The INVITE starts the call's trace: an ``INVITE <feature>`` server span, inside which
the bridge is opened, so every event the bridge publishes for the call (the dial event
first) carries that trace to the IVR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from hotdesk_contracts.dialplan import Login, Logout
from hotdesk_runtime.logging import log_context
from hotdesk_runtime.telemetry import (
    DESK,
    FEATURE,
    SIP_CALL_ID,
    SIP_METHOD,
    SIP_STATUS_CODE,
    USER,
)

from .media.dtmf_info import DtmfInfoError
from .media.ivr_bridge import IvrBridge, SendBye
from .media.sdp import NoCommonCodec, SdpError
from .media.session import NoRtpPort
from .proxy import next_hop
from .routing import Caller, is_logout_key
from .sip.headers import HeaderError, NameAddr, Via
from .sip.message import Headers, SipRequest, SipResponse, response_to
from .sip.transaction import T1, T2, ClientTransaction
from .sip.transport import Source
from .sip.uri import UriError, parse_uri

log = logging.getLogger("hotdesk.sip_edge.ivr_calls")
_tracer = trace.get_tracer("hotdesk_sip_edge")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
MAGIC = "z9hG4bK"

OpenBridge = Callable[[str, bytes, SendBye, str], Awaitable[IvrBridge]]
"""``(call_id, sdp_offer, send_bye, peer_host)`` → an :class:`IvrBridge` with its media
open (what :meth:`IvrBridge.answer_call` does, with the edge's settings bound).
``peer_host`` is the INVITE's signalling source: RTP from it is accepted too, since a
phone behind NAT (or one advertising another address in SDP) sends from there."""


class DialogNetwork(Protocol):
    """What the UAS needs from the edge: its address and its transports."""

    host: str
    port: int

    async def send_request(self, request: SipRequest, target: Source) -> bool:
        """Send a request to ``target``."""
        ...

    def send_response(self, response: SipResponse, target: Source) -> None:
        """Send a response back towards ``target`` (the request's source)."""
        ...

    def track(self, branch: str, tx: ClientTransaction, target: Source) -> None:
        """Run a client transaction's retransmission and timeout timers."""
        ...


@dataclass
class IvrDialog:
    """One answered hot-desk call, from the edge's (UAS) side (RFC 3261 §12.1.1)."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    """The INVITE's To, without tag: our From in requests we send."""
    remote_uri: str
    """The INVITE's From (with the phone's tag): the To of requests we send."""
    remote_target: str
    """The phone's Contact URI: the Request-URI of requests we send (§12.1.1)."""
    route_set: list[str]
    """The INVITE's Record-Route entries in order (§12.1.1: the UAS keeps them as is)."""
    target: Source
    """Where in-dialog requests go: the first route, else where the INVITE came from."""
    bridge: IvrBridge
    ok: SipResponse
    """The 200 OK, for retransmissions until the ACK (§13.3.1.4)."""
    local_cseq: int = 0
    acked: bool = False
    ended: bool = False


def feature_of(classification: Login | Logout) -> tuple[str, str]:
    """The (feature, argument) the IVR expects for a hot-desk classification."""
    if isinstance(classification, Login):
        return "login", classification.ext
    return "logout", ""


def source_of(via: Via) -> Source:
    """Where the request really came from, from its top Via as the edge stamped it
    (``received``/``rport``, RFC 3261 §18.2.1, RFC 3581 §4): for phones behind NAT and
    for TCP flows this is the only address that reaches them."""
    host = via.received or via.host.strip("[]")
    port = via.rport or via.port or (5061 if via.transport.upper() == "TLS" else 5060)
    return Source(via.transport.upper(), host, port)


class IvrCalls:
    """Answers hot-desk calls as a UAS and holds their dialogs.

    Implements the proxy's ``HotdeskCallHandler`` (:meth:`handle`) and the edge's
    in-dialog hook (:meth:`owns`, :meth:`in_dialog`).
    """

    def __init__(
        self,
        *,
        open_bridge: OpenBridge,
        on_bridge: Callable[[IvrBridge], None],
        logout_key_uri: Callable[[], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._open_bridge = open_bridge
        self._on_bridge = on_bridge
        self._logout_key_uri = logout_key_uri
        self._clock = clock
        self._net: DialogNetwork | None = None
        self.dialogs: dict[str, IvrDialog] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, network: DialogNetwork) -> None:
        """Send through ``network`` (the edge, once it exists)."""
        self._net = network

    # --- the initial INVITE ---------------------------------------------------------

    async def handle(
        self, invite: SipRequest, caller: Caller, classification: Login | Logout
    ) -> SipResponse:
        """Answer the INVITE: 200 OK with the SDP answer, or 488/400/503.

        A new trace starts here (a phone sends no trace context): the ``INVITE
        <feature>`` span is the root of the login's trace.
        """
        existing = self.dialogs.get(invite.call_id)
        if existing is not None:
            return existing.ok  # a retransmission: no new trace
        feature, argument = feature_of(classification)
        desk = caller.desk or caller.identity
        attributes = {
            SIP_METHOD: "INVITE",
            SIP_CALL_ID: invite.call_id,
            DESK: desk,
            FEATURE: feature,
        }
        if argument:
            attributes[USER] = argument
        with (
            _tracer.start_as_current_span(
                f"INVITE {feature}",
                context=otel_context.Context(),
                kind=SpanKind.SERVER,
                attributes=attributes,
            ) as span,
            log_context(call_id=invite.call_id, desk=desk),
        ):
            response = await self._answer(invite, caller, classification)
            span.set_attribute(SIP_STATUS_CODE, response.status)
            return response

    async def _answer(
        self, invite: SipRequest, caller: Caller, classification: Login | Logout
    ) -> SipResponse:
        assert self._net is not None, "attach the edge first"
        call_id = invite.call_id
        existing = self.dialogs.get(call_id)
        if existing is not None:
            return existing.ok
        fields = {"call_id": call_id, "caller": caller.identity}
        try:
            peer_host = source_of(invite.top_via).host
            bridge = await self._open_bridge(
                call_id, invite.body, lambda: self.send_bye(call_id), peer_host
            )
        except NoCommonCodec:
            log.info("no common codec", extra=fields)
            refusal = response_to(invite, 488, "Not Acceptable Here", to_tag=_tag())
            # RFC 3261 §20.43: warning 305 names why the offer was refused.
            refusal.headers.add("Warning", f'305 {self._net.host} "Incompatible media format"')
            return refusal
        except SdpError as exc:
            log.info("bad SDP offer", extra={**fields, "error": str(exc)})
            return response_to(invite, 400, "Bad Request", to_tag=_tag())
        except NoRtpPort:
            log.error("no free RTP port", extra=fields)
            busy = response_to(invite, 503, "Service Unavailable", to_tag=_tag())
            busy.headers.add("Retry-After", "5")
            return busy
        local_tag = _tag()
        ok = response_to(invite, 200, "OK", to_tag=local_tag)
        dialog = self._dialog(invite, ok, local_tag, bridge)
        # RFC 3261 §12.1.1: the UAS copies Record-Route into its 2xx.
        for value in invite.headers.get_all("Record-Route"):
            ok.headers.add("Record-Route", value)
        ok.headers.add("Contact", self._contact(dialog.target.transport))
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = bridge.answer
        self.dialogs[call_id] = dialog
        self._on_bridge(bridge)
        uri = parse_uri(invite.uri)
        dialled = uri.user_unescaped()
        feature, argument = feature_of(classification)
        via_key = feature == "logout" and is_logout_key(dialled, self._logout_key_uri())
        # Both tasks start once this coroutine has returned the 200 OK to the edge,
        # which sends it before anything else runs.
        self._spawn(
            bridge.start(
                caller=caller.desk or caller.identity,
                dialled=dialled,
                feature=feature,
                argument=argument,
                via_key=via_key,
            ),
        )
        if dialog.target.transport == "UDP":
            self._spawn(self._retransmit_ok(dialog))
        log.info("hot-desk call answered", extra={**fields, "feature": feature})
        return ok

    def _dialog(
        self, invite: SipRequest, ok: SipResponse, local_tag: str, bridge: IvrBridge
    ) -> IvrDialog:
        sender = invite.from_
        to = invite.to
        contacts = invite.contacts() or []
        remote_target = contacts[0].raw_uri if contacts else sender.raw_uri
        route_set = [str(r) for r in invite.routes("Record-Route")]
        target = source_of(invite.top_via)
        if route_set:
            first = invite.routes("Record-Route")[0]
            if first.uri is not None:
                target = next_hop(first.uri, target.transport)
        return IvrDialog(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=sender.tag or "",
            local_uri=str(NameAddr(to.raw_uri, to.display, (), to.uri)),
            remote_uri=invite.headers.get("From") or "",
            remote_target=remote_target,
            route_set=route_set,
            target=target,
            bridge=bridge,
            ok=ok,
            local_cseq=secrets.randbelow(2**16) + 1,
        )

    def _contact(self, transport: str) -> str:
        assert self._net is not None
        suffix = {"TCP": ";transport=tcp", "TLS": ";transport=tls"}.get(transport, "")
        return f"<sip:{self._net.host}:{self._net.port}{suffix}>"

    async def _retransmit_ok(self, dialog: IvrDialog) -> None:
        """RFC 3261 §13.3.1.4: over UDP the UAS core re-sends the 2xx at T1, doubling up
        to T2, until the ACK; with no ACK after 64*T1 the call is ended with a BYE."""
        assert self._net is not None
        interval = T1
        waited = 0.0
        while waited < 64 * T1:
            await asyncio.sleep(interval)
            waited += interval
            if dialog.acked or dialog.ended:
                return
            self._net.send_response(dialog.ok, dialog.target)
            interval = min(interval * 2, T2)
        log.warning("no ACK for the 200 OK: hanging up", extra={"call_id": dialog.call_id})
        await self.send_bye(dialog.call_id)
        await dialog.bridge.on_bye()

    # --- in-dialog requests ---------------------------------------------------------

    def owns(self, request: SipRequest) -> bool:
        """Whether ``request`` is for a dialog the edge terminates itself: one of these
        calls (Call-ID and our tag), or any in-dialog request addressed to the edge with
        no Route left, which only a dialog of the edge's own can produce (RFC 3261
        §12.2.2: an unknown one is answered 481 by :meth:`in_dialog`)."""
        dialog = self.dialogs.get(request.call_id)
        try:
            if dialog is not None:
                return request.to.tag == dialog.local_tag
            if request.to.tag is None or request.headers.get("Route") or self._net is None:
                return False
            uri = parse_uri(request.uri)
        except (HeaderError, UriError):
            return False
        return uri.host == self._net.host and (uri.port or 5060) == self._net.port

    async def in_dialog(self, request: SipRequest, source: Source) -> SipResponse | None:
        """Serve an in-dialog request of an owned call (None for ACK: no response)."""
        dialog = self.dialogs.get(request.call_id)
        method = request.method
        if dialog is None:
            if method == "ACK":
                return None
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        if not dialog.route_set:
            # Symmetric signalling: the phone's latest request came from where it can be
            # reached (its TCP connection, its NAT binding), not necessarily its Via.
            dialog.target = source
        if method == "ACK":
            dialog.acked = True
            return None
        if method == "BYE":
            self._forget(dialog)
            await dialog.bridge.on_bye()
            return response_to(request, 200, "OK")
        if method == "INFO":
            try:
                dialog.bridge.on_info(request.headers.get("Content-Type") or "", request.body)
            except DtmfInfoError as exc:
                # RFC 6086 §4.2.2: an Info-Package we do not take is refused with 469;
                # legacy INFO without packages gets 415 for an unknown type.
                log.info("INFO without a digit", extra={"call_id": dialog.call_id})
                refusal = response_to(request, 415, "Unsupported Media Type")
                refusal.headers.add("Accept", "application/dtmf-relay, application/dtmf")
                if "content type" not in str(exc):
                    refusal = response_to(request, 400, "Bad Request")
                return refusal
            return response_to(request, 200, "OK")
        if method in ("INVITE", "UPDATE"):
            # A session refresh or hold: the media stays as answered (RFC 3264 §8 allows
            # the same answer again); the IVR call is short-lived.
            ok = response_to(request, 200, "OK")
            ok.headers.add("Contact", self._contact(dialog.target.transport))
            ok.headers.add("Allow", ALLOW)
            if request.body:
                ok.headers.add("Content-Type", "application/sdp")
                ok.body = dialog.ok.body
            return ok
        if method == "OPTIONS":
            ok = response_to(request, 200, "OK")
            ok.headers.add("Allow", ALLOW)
            ok.headers.add("Accept", "application/sdp")
            return ok
        refusal = response_to(request, 405, "Method Not Allowed")
        refusal.headers.add("Allow", ALLOW)
        return refusal

    # --- hanging up -----------------------------------------------------------------

    def bye_request(self, dialog: IvrDialog) -> tuple[SipRequest, str]:
        """The BYE for ``dialog`` (RFC 3261 §12.2.1.1, §15.1.1) and its branch."""
        assert self._net is not None
        dialog.local_cseq += 1
        branch = MAGIC + secrets.token_hex(8)
        headers = Headers()
        transport = dialog.target.transport
        headers.add(
            "Via", f"SIP/2.0/{transport} {self._net.host}:{self._net.port};branch={branch};rport"
        )
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{dialog.local_uri};tag={dialog.local_tag}")
        headers.add("To", dialog.remote_uri)
        headers.add("Call-ID", dialog.call_id)
        headers.add("CSeq", f"{dialog.local_cseq} BYE")
        uri = dialog.remote_target
        routes = list(dialog.route_set)
        if routes and ";lr" not in routes[0]:
            # Strict router first (§12.2.1.1): it becomes the Request-URI and the
            # remote target goes last in the Route set.
            uri = _strip_angle(routes[0])
            routes = [*routes[1:], f"<{dialog.remote_target}>"]
        for route in routes:
            headers.add("Route", route)
        return SipRequest(headers, b"", "BYE", uri), branch

    async def send_bye(self, call_id: str) -> None:
        """Hang up ``call_id`` from the edge's side (the IVR is done with it)."""
        dialog = self.dialogs.get(call_id)
        if dialog is None or self._net is None:
            return
        self._forget(dialog)
        request, branch = self.bye_request(dialog)
        if not await self._net.send_request(request, dialog.target):
            log.warning("BYE not sent", extra={"call_id": call_id})
            return
        tx = ClientTransaction(
            request.serialize(), "BYE", self._clock(), reliable=dialog.target.transport != "UDP"
        )
        self._net.track(branch, tx, dialog.target)

    def _forget(self, dialog: IvrDialog) -> None:
        dialog.ended = True
        self.dialogs.pop(dialog.call_id, None)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drained(self, timeout: float, poll: float = 0.1) -> int:
        """Wait until no call is up, or ``timeout`` seconds; the calls still up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.dialogs and loop.time() < deadline:
            await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))
        return len(self.dialogs)

    async def close(self) -> None:
        """Hang up every call still up and stop the retransmission tasks."""
        for call_id, dialog in list(self.dialogs.items()):
            await self.send_bye(call_id)
            await dialog.bridge.on_bye()  # frees the media and tells the IVR
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _tag() -> str:
    return secrets.token_hex(5)


def _strip_angle(entry: str) -> str:
    text = entry.strip()
    if "<" in text and ">" in text:
        return text[text.index("<") + 1 : text.index(">")]
    return text.split(";")[0]


__all__ = [
    "ALLOW",
    "DialogNetwork",
    "IvrCalls",
    "IvrDialog",
    "OpenBridge",
    "feature_of",
    "is_logout_key",
    "source_of",
]
