"""The stateful proxy (RFC 3261 §16): routes calls, follows route sets, relays responses.

Every request it forwards gets its own Via with a fresh branch and a client
transaction; the branch maps back to the upstream request and where it came from, so
responses are relayed to the real source (RFC 3581) without trusting the Via. A
Record-Route keeps the edge in the dialog, so in-dialog requests (ACK, BYE, re-INVITE,
INFO, UPDATE) come back through it and follow the route set.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from hotdesk_contracts.dialplan import Login, Logout
from hotdesk_contracts.directory import Directory
from hotdesk_contracts.messages import CallPhase

from .auth import Authenticator, PasswordLookup, Verdict
from .location import Binding, LocationStore, live
from .login_state import LoginMap
from .routing import Caller, Refusal, ToAor, ToHotdesk, ToTrunk, caller_of, decide
from .sip.headers import HeaderError, NameAddr, Via, quote
from .sip.message import SipRequest, SipResponse, response_to
from .sip.transaction import ClientTransaction
from .sip.transport import Source
from .sip.uri import SipUri, UriError, parse_uri

log = logging.getLogger("hotdesk.sip_edge.proxy")

MAGIC = "z9hG4bK"


class HotdeskCallHandler(Protocol):
    """The media/IVR path that answers calls to the hot-desk codes."""

    async def handle(
        self, invite: SipRequest, caller: Caller, classification: Login | Logout
    ) -> SipResponse:
        """Answer (or refuse) the INVITE; the response is sent upstream as is."""
        ...


class Network(Protocol):
    """What the proxy needs from the edge's transports."""

    async def send_request(self, request: SipRequest, target: Source) -> bool:
        """Send a request to ``target`` (opening a TCP connection when needed)."""
        ...

    def send_response(self, response: SipResponse, target: Source) -> None:
        """Send a response to ``target``."""
        ...

    def track(self, branch: str, tx: ClientTransaction, target: Source) -> None:
        """Run the client transaction's timers for a request sent to ``target``."""
        ...

    async def resolve(self, target: Source) -> Source | None:
        """``target`` with a numeric host (None: it does not resolve)."""
        ...


CallStateListener = Callable[["CallInfo", CallPhase], Awaitable[None]]


@dataclass
class CallInfo:
    """One routed call, for call-state events."""

    call_id: str
    caller: str
    callee: str
    caller_desk: str = ""
    callee_desk: str = ""
    from_tag: str = ""
    to_tag: str = ""
    answered: bool = False
    ringing: bool = False


@dataclass
class ForkGroup:
    """The branches one INVITE was forked to (RFC 3261 §16.6-16.7): the first 2xx
    wins and the other branches are cancelled; if every branch fails, the best final
    response goes upstream."""

    branches: list[str] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    answered: bool = False
    best: SipResponse | None = None

    @property
    def complete(self) -> bool:
        """Every branch has a final response."""
        return self.done.issuperset(self.branches)


def _rank(status: int) -> tuple[int, int]:
    # RFC 3261 §16.7 step 6: a 6xx wins, otherwise the lowest response class.
    return (0 if status >= 600 else 1, status)


@dataclass
class Forwarded:
    """A request the proxy sent downstream, keyed by its branch."""

    upstream: Source
    request: SipRequest
    """What was sent downstream."""
    target: Source
    invite: bool = False
    final: bool = False
    call: CallInfo | None = None
    upstream_branch: str = ""
    upstream_request: SipRequest | None = field(default=None, repr=False)
    group: ForkGroup | None = None


def next_hop(uri: SipUri, default_transport: str = "UDP") -> Source:
    """Where to send a request for ``uri`` (RFC 3263 without DNS: numeric hosts)."""
    transport = (uri.param("transport") or default_transport).upper()
    if uri.scheme == "sips":
        transport = "TLS"
    port = uri.port or (5061 if transport == "TLS" else 5060)
    return Source(transport, uri.param("maddr") or uri.host, port)


class Proxy:
    """Routes INVITEs and relays everything that belongs to routed calls."""

    def __init__(
        self,
        *,
        network: Network,
        host: str,
        port: int,
        auth: Authenticator,
        passwords: PasswordLookup,
        directory: Callable[[], Directory],
        logins: LoginMap,
        locations: LocationStore,
        on_call_state: CallStateListener,
        hotdesk: HotdeskCallHandler | None = None,
        clock: Callable[[], float],
        route_secret: bytes,
        logout_key_uri: Callable[[], str] = lambda: "",
    ) -> None:
        self._net = network
        self._logout_key_uri = logout_key_uri
        self.host = host
        self.port = port
        self._auth = auth
        self._passwords = passwords
        self._directory = directory
        self._logins = logins
        self._locations = locations
        self._on_call_state = on_call_state
        self.hotdesk = hotdesk
        self._clock = clock
        self._route_secrets = [route_secret]
        self.forwarded: dict[str, Forwarded] = {}
        self._by_upstream: dict[tuple[str, str], ForkGroup] = {}
        self.calls: dict[str, CallInfo] = {}

    # --- helpers ------------------------------------------------------------------------

    def _is_me(self, uri: SipUri | None) -> bool:
        return uri is not None and uri.host == self.host and (uri.port or 5060) == self.port

    def _via(self, transport: str) -> tuple[str, str]:
        branch = MAGIC + secrets.token_hex(8)
        return branch, f"SIP/2.0/{transport} {self.host}:{self.port};branch={branch};rport"

    def rotate_route_secret(self, secret: bytes) -> None:
        """Sign new dialogs with ``secret``; dialogs signed with the previous one keep
        working."""
        if secret != self._route_secrets[0]:
            self._route_secrets = [secret, self._route_secrets[0]]

    def _dialog_token(self, call_id: str, secret: bytes | None = None) -> str:
        key = self._route_secrets[0] if secret is None else secret
        mac = hmac.new(key, call_id.encode("utf-8", "surrogateescape"), "sha256")
        return mac.hexdigest()[:20]

    def _record_route(self, transport: str, call_id: str) -> str:
        # The hd parameter proves that this edge (or a replica sharing the secret)
        # routed the dialog: in-dialog requests without it are refused, so the route
        # set cannot be used to relay arbitrary traffic through the edge.
        suffix = ";transport=tcp" if transport == "TCP" else ""
        return f"<sip:{self.host}:{self.port}{suffix};lr;hd={self._dialog_token(call_id)}>"

    async def _send(
        self,
        upstream: Source,
        upstream_request: SipRequest,
        request: SipRequest,
        target: Source,
        *,
        call: CallInfo | None = None,
        group: ForkGroup | None = None,
    ) -> bool:
        resolved = await self._net.resolve(target)
        if resolved is None:
            return False
        target = resolved
        branch, via = self._via(target.transport)
        request.headers.add("Via", via, first=True)
        sent = await self._net.send_request(request, target)
        if not sent:
            return False
        tx = ClientTransaction(
            request.serialize(), request.method, self._clock(), reliable=target.transport != "UDP"
        )
        self._net.track(branch, tx, target)
        upstream_branch = upstream_request.top_via.branch or ""
        self.forwarded[branch] = Forwarded(
            upstream,
            request,
            target,
            invite=request.method == "INVITE",
            call=call,
            upstream_branch=upstream_branch,
            upstream_request=upstream_request,
            group=group,
        )
        if group is not None:
            group.branches.append(branch)
            self._by_upstream[(upstream_branch, upstream_request.call_id)] = group
        return True

    def _prepare(self, request: SipRequest) -> SipRequest | None:
        """A copy to forward, with Max-Forwards decremented (None: it reached 0)."""
        copy = SipRequest(request.headers.copy(), request.body, request.method, request.uri)
        raw = copy.headers.get("Max-Forwards")
        hops = int(raw) if raw is not None else 70
        if hops <= 0:
            return None
        copy.headers.set("Max-Forwards", str(hops - 1))
        return copy

    # --- initial INVITE ------------------------------------------------------------------

    async def invite(self, request: SipRequest, source: Source) -> SipResponse | None:
        """Handle an out-of-dialog INVITE; returns the response to send now, if any."""
        now = self._clock()
        verdict = self._auth.check(
            request, "Proxy-Authorization", self._passwords, source.host, now
        )
        if verdict.verdict is Verdict.CHALLENGE:
            response = response_to(request, 407, "Proxy Authentication Required", to_tag=_tag())
            for value in verdict.challenges:
                response.headers.add("Proxy-Authenticate", value)
            return response
        if verdict.verdict is Verdict.BAD_REQUEST:
            return response_to(request, 400, "Bad Request", to_tag=_tag())
        if verdict.verdict is Verdict.FORBIDDEN:
            return response_to(request, 403, "Forbidden", to_tag=_tag())
        try:
            uri = parse_uri(request.uri)
        except UriError:
            return response_to(request, 416, "Unsupported URI Scheme", to_tag=_tag())
        directory = self._directory()
        caller = caller_of(verdict.identity, directory, self._logins)
        dialled = uri.user_unescaped()
        decision = decide(caller, dialled, directory, self._logins, self._logout_key_uri())
        call_log = {"call_id": request.call_id, "caller": caller.identity, "dialled": dialled}
        if isinstance(decision, Refusal):
            if decision.log:
                log.warning("call refused: %s", decision.log, extra=call_log)
            else:
                log.info("call refused", extra={**call_log, "status": decision.status})
            return response_to(request, decision.status, decision.reason, to_tag=_tag())
        if isinstance(decision, ToHotdesk):
            if self.hotdesk is None:
                return response_to(request, 480, "Temporarily Unavailable", to_tag=_tag())
            return await self.hotdesk.handle(request, caller, decision.classification)
        forward = self._prepare(request)
        if forward is None:
            return response_to(request, 483, "Too Many Hops", to_tag=_tag())
        forward.headers.remove("Proxy-Authorization")
        self._present(forward, caller)
        # RFC 3261 §16.6 step 4: Record-Route so in-dialog requests come through here.
        forward.headers.add(
            "Record-Route", self._record_route(source.transport, request.call_id), first=True
        )
        from_tag = ""
        with contextlib.suppress(HeaderError):
            from_tag = request.from_.tag or ""
        branches: list[tuple[SipRequest, Source]] = []
        if isinstance(decision, ToTrunk):
            trunk = parse_uri(decision.uri)
            target_uri = SipUri(trunk.scheme, dialled, trunk.host, trunk.port, None, trunk.params)
            forward.uri = str(target_uri)
            branches.append((forward, next_hop(target_uri)))
            call = CallInfo(
                request.call_id, caller.party, decision.callee, caller.desk, "", from_tag
            )
        else:
            assert isinstance(decision, ToAor)
            bindings, _ = await self._locations.load(decision.aor)
            current = live(bindings, now)
            if not current:
                log.info("callee not registered", extra={**call_log, "aor": decision.aor})
                return response_to(request, 480, "Temporarily Unavailable", to_tag=_tag())
            # Parallel forking to every registered contact (RFC 3261 §16.6), newest first.
            for binding in sorted(current, key=lambda b: b.expires_at, reverse=True):
                branch = SipRequest(forward.headers.copy(), forward.body, "INVITE", binding.uri)
                branches.append((branch, self._route_to_binding(branch, binding)))
            call = CallInfo(
                request.call_id,
                caller.party,
                decision.callee,
                caller.desk,
                decision.callee_desk,
                from_tag,
            )
        group = ForkGroup()
        sent_any = False
        for branch_request, target in branches:
            sent_any |= await self._send(
                source, request, branch_request, target, call=call, group=group
            )
        if not sent_any:
            return response_to(request, 503, "Service Unavailable", to_tag=_tag())
        self.calls[request.call_id] = call
        await self._on_call_state(call, CallPhase.TRYING)
        log.info(
            "call routed",
            extra={**call_log, "targets": [r.uri for r, _ in branches]},
        )
        return response_to(request, 100, "Trying")

    def _present(self, request: SipRequest, caller: Caller) -> None:
        """Present the call as the caller's user (From display + P-Asserted-Identity)."""
        request.headers.remove("P-Asserted-Identity")
        request.headers.remove("P-Preferred-Identity")
        if not caller.user:
            return
        name = caller.name or caller.user
        try:
            sender = request.from_
        except HeaderError:
            return
        request.headers.set("From", str(NameAddr(sender.raw_uri, name, sender.params, sender.uri)))
        domain = sender.uri.host_port() if sender.uri is not None and sender.uri.host else self.host
        request.headers.add("P-Asserted-Identity", f"{quote(name)} <sip:{caller.user}@{domain}>")

    def _route_to_binding(self, request: SipRequest, binding: Binding) -> Source:
        """Pre-load the binding's Path as Route (RFC 3327 §5.3) and pick the next hop:
        the first Path hop, else where the phone's REGISTER really came from (NAT)."""
        if binding.path:
            for entry in reversed(binding.path):
                request.headers.add("Route", entry, first=True)
            first = parse_uri(_strip_angle(binding.path[0]))
            return next_hop(first, binding.transport)
        if binding.behind_nat or binding.transport != "UDP":
            # Behind NAT the pinhole is at the REGISTER's source; over TCP/TLS the
            # phone's connection is (RFC 5626 §5.3 reuses the flow it registered on).
            return Source(binding.transport, binding.source_host, binding.source_port)
        try:
            return next_hop(parse_uri(binding.uri), binding.transport)
        except UriError:
            return Source(binding.transport, binding.source_host, binding.source_port)

    # --- CANCEL, ACK and in-dialog requests ---------------------------------------------

    async def cancel(self, request: SipRequest, source: Source) -> SipResponse:
        """RFC 3261 §16.10: answer the CANCEL and cancel every pending branch."""
        group = self._by_upstream.get((request.top_via.branch or "", request.call_id))
        if group is None:
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        await self._cancel_branches(group, keep="")
        return response_to(request, 200, "OK")

    async def _cancel_branches(self, group: ForkGroup, keep: str) -> None:
        for branch in group.branches:
            sent = self.forwarded.get(branch)
            if branch == keep or branch in group.done or sent is None:
                continue
            cancel = SipRequest(sent.request.headers.copy(), b"", "CANCEL", sent.request.uri)
            wanted = {"Via", "From", "To", "Call-ID", "Route", "Max-Forwards"}
            cancel.headers.items = [(k, v) for k, v in cancel.headers.items if k in wanted]
            # The CANCEL carries the same top Via (branch) as the INVITE it cancels (§9.1).
            vias = cancel.headers.get_all("Via")
            cancel.headers.remove("Via")
            cancel.headers.add("Via", vias[0])
            cancel.headers.set("CSeq", f"{sent.request.cseq.seq} CANCEL")
            await self._net.send_request(cancel, sent.target)

    async def in_dialog(self, request: SipRequest, source: Source) -> SipResponse | None:
        """Forward a request that follows a route set (RFC 3261 §16.4, §16.12)."""
        forward = self._prepare(request)
        if forward is None:
            return None if request.method == "ACK" else response_to(request, 483, "Too Many Hops")
        try:
            routes = forward.routes("Route")
        except HeaderError:
            return None if request.method == "ACK" else response_to(request, 400, "Bad Request")
        if not routes:
            # No route set through the edge: a dialog it does not know (§12.2.2).
            if request.method == "ACK":
                return None
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        mine = routes[0].uri
        if mine is None or not self._is_me(mine):
            # Only dialogs this edge record-routed are relayed (no open relay).
            return None if request.method == "ACK" else response_to(request, 403, "Forbidden")
        token = mine.param("hd") or ""
        if not any(
            hmac.compare_digest(token, self._dialog_token(request.call_id, secret))
            for secret in self._route_secrets
        ):
            log.warning(
                "in-dialog request with a foreign route", extra={"call_id": request.call_id}
            )
            return None if request.method == "ACK" else response_to(request, 403, "Forbidden")
        if routes:
            forward.headers.remove("Route")
            for entry in routes[1:]:
                forward.headers.add("Route", str(entry))
            routes = routes[1:]
        try:
            if routes and routes[0].uri is not None:
                target = next_hop(routes[0].uri)
            else:
                target = next_hop(parse_uri(forward.uri))
        except UriError:
            return (
                None
                if request.method == "ACK"
                else response_to(request, 416, "Unsupported URI Scheme")
            )
        if (
            self._is_me(parse_uri(forward.uri) if forward.uri.startswith("sip") else None)
            and not routes
        ):
            # Addressed to the edge itself with no one further to go to.
            return (
                None
                if request.method == "ACK"
                else response_to(request, 481, "Call/Transaction Does Not Exist")
            )
        if request.method == "ACK":
            # ACK for a 2xx is its own transaction and gets no response (§17.1.1.3).
            resolved = await self._net.resolve(target)
            if resolved is None:
                return None
            _, via = self._via(resolved.transport)
            forward.headers.add("Via", via, first=True)
            await self._net.send_request(forward, resolved)
            return None
        call = self.calls.get(request.call_id)
        if not await self._send(source, request, forward, target, call=call):
            return response_to(request, 503, "Service Unavailable")
        return None

    # --- responses ----------------------------------------------------------------------

    async def response(self, response: SipResponse, source: Source) -> None:
        """Relay a response to the request it answers (RFC 3261 §16.7)."""
        try:
            vias = response.vias
        except HeaderError:
            return
        if not vias or vias[0].host != f"{self.host}" or (vias[0].port or 5060) != self.port:
            return  # not ours (RFC 4475 §3.3.10: never forward to what the Via says)
        branch = vias[0].branch or ""
        sent = self.forwarded.get(branch)
        if sent is None:
            return
        status = response.status
        group = sent.group
        if status < 200 and (sent.final or (group is not None and group.answered)):
            # A branch still ringing after the call was answered (its 180 crossed our
            # CANCEL): the caller's transaction has its final response and may not get
            # a provisional one after it (RFC 3261 §16.7 step 5; RFC 6026 §7.1).
            return
        if sent.final and status >= 200 and not (sent.invite and status < 300):
            return  # retransmitted final response, already handled
        if status >= 200:
            sent.final = True
        if sent.invite and status >= 300:
            await self._ack_non_2xx(sent, response)
        if sent.invite and group is not None and status >= 200:
            group.done.add(branch)
            if status < 300:
                if not group.answered:
                    group.answered = True
                    await self._cancel_branches(group, keep=branch)
            else:
                if group.best is None or _rank(status) < _rank(group.best.status):
                    group.best = response
                if group.answered or not group.complete:
                    return  # another branch may still answer
                response = group.best
        self._net.send_response(self._relayed(sent, response), sent.upstream)
        await self._call_progress(sent, response)

    def _relayed(self, sent: Forwarded, response: SipResponse) -> SipResponse:
        relayed = SipResponse(
            response.headers.copy(), response.body, response.status, response.reason
        )
        # RFC 3261 §16.7 step 3 removes the edge's Via; the rest must be the upstream
        # request's Via stack, which the edge holds itself rather than trusting the
        # downstream element to have echoed it intact.
        upstream_vias = (
            sent.upstream_request.headers.get_all("Via")
            if sent.upstream_request is not None
            else response.headers.get_all("Via")[1:]
        )
        relayed.headers.remove("Via")
        for offset, value in enumerate(upstream_vias):
            relayed.headers.items.insert(offset, ("Via", value))
        return relayed

    async def _ack_non_2xx(self, sent: Forwarded, response: SipResponse) -> None:
        """RFC 3261 §17.1.1.3: the proxy's client transaction ACKs a non-2xx itself."""
        ack = SipRequest(sent.request.headers.copy(), b"", "ACK", sent.request.uri)
        keep = {"Via", "From", "Call-ID", "Route", "Max-Forwards"}
        ack.headers.items = [(k, v) for k, v in ack.headers.items if k in keep]
        vias = ack.headers.get_all("Via")
        ack.headers.remove("Via")
        ack.headers.add("Via", vias[0])
        to = response.headers.get("To")
        if to is not None:
            ack.headers.set("To", to)
        ack.headers.set("CSeq", f"{sent.request.cseq.seq} ACK")
        await self._net.send_request(ack, sent.target)

    async def _call_progress(self, sent: Forwarded, response: SipResponse) -> None:
        call = sent.call
        if call is None:
            return
        status = response.status
        method = sent.request.method
        if method == "INVITE" and not call.answered:
            if status in (180, 183):
                # The early dialog's To-tag, so the callee's side of the call keeps one
                # dialog id from early to confirmed (RFC 4235 section 4.1.1). With forking,
                # the first branch that rang with a tag gives it (a 2xx from another
                # branch replaces it: that is another dialog).
                learned = ""
                if not call.to_tag:
                    with contextlib.suppress(HeaderError):
                        learned = response.to.tag or ""
                    call.to_tag = learned
                if not call.ringing or learned:
                    # Once, however many forked branches ring; again only if a later 18x
                    # brings the tag the first one lacked.
                    call.ringing = True
                    await self._on_call_state(call, CallPhase.RINGING)
            elif 200 <= status < 300:
                call.answered = True
                with contextlib.suppress(HeaderError):
                    call.to_tag = response.to.tag or ""
                await self._on_call_state(call, CallPhase.ANSWERED)
            elif status >= 300:
                self.calls.pop(call.call_id, None)
                await self._on_call_state(call, CallPhase.ENDED)
        elif method == "BYE" and status >= 200 and self.calls.pop(call.call_id, None) is not None:
            await self._on_call_state(call, CallPhase.ENDED)

    def timed_out(self, branch: str) -> SipResponse | None:
        """A client transaction failed (Timer B/F): what to relay upstream, if anything
        (the best final response once every forked branch is over, else a 408)."""
        sent = self.forwarded.get(branch)
        if sent is None or sent.final or sent.upstream_request is None:
            return None
        sent.final = True
        if sent.request.method == "ACK":
            return None
        group = sent.group
        if group is not None:
            group.done.add(branch)
            if group.answered or not group.complete:
                return None
            if group.best is not None:
                return self._relayed(sent, group.best)
        return response_to(sent.upstream_request, 408, "Request Timeout", to_tag=_tag())

    def forget(self, branch: str) -> None:
        """The client transaction ended: drop its state."""
        sent = self.forwarded.pop(branch, None)
        if sent is not None and sent.invite and sent.upstream_request is not None:
            key = (sent.upstream_branch, sent.upstream_request.call_id)
            group = self._by_upstream.get(key)
            if group is not None and not any(b in self.forwarded for b in group.branches):
                del self._by_upstream[key]


def _tag() -> str:
    return secrets.token_hex(5)


def _strip_angle(entry: str) -> str:
    text = entry.strip()
    if "<" in text and ">" in text:
        return text[text.index("<") + 1 : text.index(">")]
    return text.split(";")[0]


__all__ = ["CallInfo", "HotdeskCallHandler", "Network", "Proxy", "Via", "next_hop"]
