"""The SIP edge: transports, server transactions, registrar and proxy wired together.

:class:`SipEdge` is the adapter around the pure protocol core: it owns the sockets, the
clock and the timers, and hands each message to the registrar or the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import ipaddress
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Directory, SipSettings
from hotdesk_contracts.messages import CallPhase, CallStateChanged, RegistrationChanged

from .auth import Authenticator
from .location import Binding, LocationStore
from .login_state import LoginMap
from .proxy import CallInfo, HotdeskCallHandler, Proxy
from .registrar import RegisterLimits, Registrar
from .routing import emergency_trunk
from .sip.deadlines import Deadlines
from .sip.headers import HeaderError, Via
from .sip.message import SipRequest, SipResponse, response_to
from .sip.transaction import ClientTransaction, Send, ServerTransaction, State, TimedOut, server_key
from .sip.transport import SipTransport, Source

log = logging.getLogger("hotdesk.sip_edge")

Publish = Callable[[str, bytes], Awaitable[None]]
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER, SUBSCRIBE, NOTIFY"
_FORGET_AFTER = 32.0
RETRY_AFTER_SECONDS = 5
"""Retry-After of the 503 a request gets when the bus or a store fails under it."""
_SERVER_TX_LIMIT = 64 * 0.5 + _FORGET_AFTER
"""A server transaction without a timer running (its TU never answered) is dropped
this long after the request came."""


GC_THRESHOLDS = (5_000, 50, 100)
"""Garbage collector thresholds of an edge process (CPython's default: 700, 10, 10)."""


def tune_garbage_collector() -> None:
    """The garbage collector policy of a process that runs an edge, once it started.

    What start-up made (modules, directory, codecs, caches) lives as long as the
    process: it is frozen out of every collection. An edge at 2,000 REGISTER/s keeps
    ~130,000 server transactions for Timer J and frees nearly everything else by
    reference counting; with CPython's default thresholds the collector promoted those
    transactions and walked them again in every full collection (~45 us of CPU per
    registration at 2,000/s, a tenth of the edge's, and pauses of ~80 ms). With 5,000
    new objects per young collection (pauses of ~3 ms) and the older generations
    collected rarely, the collector cost ~15 us per registration. Reference cycles,
    which the edge seldom makes, are still collected, only later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def nonce_secret(directory: Directory, realm: str) -> bytes:
    """A nonce key every edge replica derives alike from the directory it shares, and
    that nobody without the SIP passwords can compute."""
    h = hashlib.sha256(b"hotdesk-sip-nonce\0" + realm.encode())
    for desk in directory.desks:
        h.update(f"\0d{desk.name}\0{desk.sip_password}".encode())
    for ext in directory.extensions:
        h.update(f"\0e{ext.number}\0{ext.sip_password}".encode())
    return h.digest()


@functools.lru_cache(maxsize=4096)
def _is_ip_address(host: str) -> bool:
    """Whether ``host`` is an IP address literal; memoised, as every request the edge
    sends asks it (a thousand times per BLF fan-out) of the same few hosts."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _route_secret(secret: bytes) -> bytes:
    return hashlib.sha256(b"record-route\0" + secret).digest()


def passwords_of(directory: Directory) -> Callable[[str], str | None]:
    """The SIP password lookup for desks (``HDxxxx``) and extensions."""

    def lookup(user: str) -> str | None:
        desk = directory.desk(user)
        if desk is not None:
            return desk.sip_password or None
        ext = directory.extension(user)
        if ext is not None:
            return ext.sip_password or None
        return None

    return lookup


class CurrentPasswords:
    """The SIP password lookup of the current directory, as a dict built once per
    directory version: the directory's own lookups scan every desk, which on the
    REGISTER path cost more than the digest itself with a few thousand desks."""

    def __init__(self, directory: Callable[[], Directory]) -> None:
        self._directory = directory
        self._seen: Directory | None = None
        self._passwords: dict[str, str | None] = {}

    def __call__(self, user: str) -> str | None:
        directory = self._directory()
        if directory is not self._seen:
            passwords: dict[str, str | None] = {}
            # Desks win over extensions of the same name and the first entry over a
            # duplicate, as in :func:`passwords_of`.
            for ext in reversed(directory.extensions):
                passwords[ext.number] = ext.sip_password or None
            for desk in reversed(directory.desks):
                passwords[desk.name] = desk.sip_password or None
            self._passwords = passwords
            self._seen = directory
        return self._passwords.get(user)


def response_target(via: Via, source: Source) -> Source:
    """Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4): the connection it came on
    for TCP/TLS; for UDP the ``received`` address and the ``rport`` port when set."""
    if source.transport != "UDP":
        return source
    host = via.received or via.host.strip("[]")
    port = via.rport or via.port or 5060
    return Source("UDP", host, port)


class DialogOwner(Protocol):
    """Dialogs the edge terminates itself (the hot-desk IVR calls): their in-dialog
    requests are served here instead of being proxied."""

    def owns(self, request: SipRequest) -> bool:
        """Whether ``request`` belongs to one of these dialogs."""
        ...

    async def in_dialog(self, request: SipRequest, source: Source) -> SipResponse | None:
        """Serve the request (None: no response, as for ACK)."""
        ...


class SubscribeHandler(Protocol):
    """Serves SUBSCRIBE requests (the BLF notifier)."""

    async def handle(self, request: SipRequest, source: Source) -> SipResponse:
        """Answer the SUBSCRIBE (and send the NOTIFY that follows a 200)."""
        ...


class SipEdge:
    """One edge instance."""

    def __init__(
        self,
        *,
        settings: SipSettings,
        directory: Callable[[], Directory],
        locations: LocationStore,
        logins: LoginMap,
        publish: Publish,
        instance_id: str,
        hotdesk: HotdeskCallHandler | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._directory = directory
        self.passwords = CurrentPasswords(directory)
        self._publish = publish
        self.instance_id = instance_id
        self._clock = clock
        self.transport = SipTransport(
            self._on_message,
            max_bytes=settings.max_message_bytes,
            rate=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
            clock=clock,
        )
        self.auth = Authenticator(
            settings.realm,
            nonce_secret(directory(), settings.realm),
            nonce_lifetime=settings.nonce_lifetime_seconds,
            fail_limit=settings.auth_fail_limit,
            fail_window=settings.auth_fail_window_seconds,
            block_seconds=settings.auth_block_seconds,
            algorithms=settings.digest_algorithms,
        )
        self.registrar = Registrar(
            domain_users=self.passwords,
            auth=self.auth,
            store=locations,
            limits=RegisterLimits(
                settings.min_expires, settings.max_expires, min(3600, settings.max_expires)
            ),
            on_change=self._registration_changed,
            edge=instance_id,
        )
        self.logins = logins
        self.proxy: Proxy | None = None
        self._hotdesk = hotdesk
        self.dialogs: DialogOwner | None = None
        """In-dialog requests this owns go to it, not to the proxy."""
        self.subscriptions: SubscribeHandler | None = None
        """SUBSCRIBE requests go to it (405 while unset)."""
        self.draining = False
        """Stopping: a new call (an INVITE outside any dialog) is answered 503 with
        Retry-After, so the phone tries again elsewhere or later, while the calls in
        progress, registrations and subscriptions carry on."""
        self._locations = locations
        self._server_tx: dict[tuple[str, str, str], tuple[ServerTransaction, Source]] = {}
        self._client_tx: dict[str, tuple[ClientTransaction, Source]] = {}
        self._client_due: Deadlines[str] = Deadlines()
        """When each client transaction in ``_client_tx`` next needs its timers run."""
        self._server_due: Deadlines[tuple[str, str, str]] = Deadlines()
        """When each server transaction in ``_server_tx`` next needs its timers run or
        its end checked: a registrar holds tens of thousands of them in Timer J."""
        self._resolved: dict[str, tuple[str, float]] = {}
        self._forget: deque[tuple[float, str]] = deque()
        """Ended client transactions' branches with the time to forget them, in that order
        (a clock stepped back only delays the forgetting)."""
        self._timer_task: asyncio.Task[None] | None = None
        self.host = settings.advertised_host
        self.port = 0

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen on ``config.sip`` (or the given) address, start the timers."""
        tls_context: ssl.SSLContext | None = None
        if self.settings.tls_cert and self.settings.tls_key:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        await self.transport.start(
            host or self.settings.listen,
            self.settings.port if port is None else port,
            tls_port=self.settings.tls_port if tls_context else None,
            tls_context=tls_context,
        )
        self.port = self.transport.udp_port
        self.proxy = Proxy(
            network=self,
            host=self.host,
            port=self.port,
            auth=self.auth,
            passwords=self.passwords,
            directory=self._directory,
            logins=self.logins,
            locations=self._locations,
            on_call_state=self._call_state,
            hotdesk=self._hotdesk,
            clock=self._clock,
            route_secret=_route_secret(nonce_secret(self._directory(), self.settings.realm)),
            logout_key_uri=lambda: self.settings.logout_key_uri,
        )
        if emergency_trunk(self._directory()) is None:
            log.warning(
                "NO EMERGENCY TRUNK CONFIGURED: calls to emergency numbers will fail with 503; "
                "add a [[trunks]] entry with emergency = true"
            )
        self._timer_task = asyncio.get_running_loop().create_task(self._timers())
        log.info("sip edge listening", extra={"host": self.host, "port": self.port})

    async def close(self) -> None:
        """Stop the timers and the transports."""
        if self._timer_task is not None:
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
        await self.transport.close()

    # --- Network (used by the proxy) ---------------------------------------------------

    async def resolve(self, target: Source) -> Source | None:
        """``target`` with its host as an IP address (A/AAAA lookup without blocking the
        loop, cached for a minute); None when the name does not resolve."""
        if _is_ip_address(target.host):
            return target
        now = self._clock()
        cached = self._resolved.get(target.host)
        if cached is None or cached[1] <= now:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    target.host, target.port, type=socket.SOCK_DGRAM
                )
            except OSError:
                log.warning("next hop does not resolve", extra={"host": target.host})
                return None
            if not infos:
                return None
            cached = (str(infos[0][4][0]), now + 60.0)
            self._resolved[target.host] = cached
        return Source(target.transport, cached[0], target.port)

    async def send_request(self, request: SipRequest, target: Source) -> bool:
        """Send a request; resolves a host name and opens a TCP connection when the
        target needs one."""
        return await self.send_serialized(request.serialize(), target)

    async def send_serialized(self, data: bytes, target: Source) -> bool:
        """:meth:`send_request` for a request already in wire form (the BLF fan-out
        renders its NOTIFYs itself)."""
        resolved = await self.resolve(target)
        if resolved is None:
            return False
        if resolved.transport != "UDP" and not await self.transport.connect(resolved):
            return False
        return self.transport.send_to(data, resolved)

    def send_response(self, response: SipResponse, target: Source) -> None:
        """Send a response per RFC 3261 §18.2.2 (``target`` is the request's source)."""
        try:
            via = response.top_via
            method = response.cseq.method
        except (HeaderError, IndexError):
            return
        data = response.serialize()
        key = server_key(via.branch, f"{via.host}:{via.port or 5060}", method)
        entry = self._server_tx.get(key)
        if entry is not None:
            # Keep the server transaction current so a retransmitted request is
            # answered with the latest response (RFC 3261 §17.2.1).
            entry[0].respond(response.status, data, self._clock())
            self._server_due.schedule(key, entry[0].deadline)
        self.transport.send_to(data, response_target(via, target))

    def track(self, branch: str, tx: ClientTransaction, target: Source) -> None:
        """Run a client transaction's timers."""
        self._client_tx[branch] = (tx, target)
        self._schedule(branch, tx, self._clock())

    def _schedule(self, branch: str, tx: ClientTransaction, now: float) -> None:
        # An ended transaction is due at once: the next tick removes it.
        self._client_due.schedule(branch, now if tx.state is State.TERMINATED else tx.deadline)

    # --- receiving ---------------------------------------------------------------------

    def _follow_directory(self) -> None:
        """Derive the nonce and route secrets from the directory in force (checked once a
        second), so every replica with the same directory agrees on them, also after a
        reload."""
        secret = nonce_secret(self._directory(), self.settings.realm)
        self.auth.rotate(secret)
        if self.proxy is not None:
            self.proxy.rotate_route_secret(_route_secret(secret))

    def _on_message(
        self, message: SipRequest | SipResponse, source: Source
    ) -> Awaitable[None] | None:
        """Handle a message at once where that needs no waiting (retransmissions, the
        registrar's challenges); else return the rest of the work for a task."""
        if isinstance(message, SipResponse):
            return self._on_response(message, source)
        return self._on_request(message, source)

    def _on_response(self, message: SipResponse, source: Source) -> Awaitable[None] | None:
        """Feed a response to its client transaction, and hand it to the proxy (the rest
        of the work, for a task) when the proxy relayed the request. Answers to the
        edge's own requests (BLF and check-sync NOTIFYs, the IVR's BYEs) end here at
        once: a BLF fan-out brings back a thousand of them."""
        assert self.proxy is not None
        branch = ""
        with contextlib.suppress(HeaderError, IndexError):
            branch = message.top_via.branch or ""
            if message.cseq.method == "CANCEL":
                # The answer to a CANCEL the edge sent is hop-by-hop (RFC 3261
                # §16.10): it shares the INVITE's branch but not its transaction.
                return None
        entry = self._client_tx.get(branch)
        if entry is not None:
            now = self._clock()
            fresh = entry[0].receive(message.status, now)
            self._schedule(branch, entry[0], now)
            if not fresh and not (entry[0].invite and 200 <= message.status < 300):
                return None  # only 2xx retransmissions pass (RFC 3261 §17.1.1.2)
        if branch not in self.proxy.forwarded:
            return None  # no request the proxy relayed: nothing to relay back
        return self.proxy.response(message, source)

    def _stamp_via(self, request: SipRequest, source: Source) -> Via:
        """RFC 3261 §18.2.1 / RFC 3581 §4: record where the request really came from."""
        values = request.headers.get_all("Via")
        via = request.top_via
        stamped = via
        if via.host.strip("[]") != source.host:
            stamped = stamped.with_param("received", source.host)
        if via.wants_rport:
            stamped = stamped.with_param("received", source.host).with_param(
                "rport", str(source.port)
            )
        if stamped is not via:
            rest = values[0].split(",", 1)
            first = str(stamped) + ("," + rest[1] if len(rest) > 1 else "")
            for i, (name, _) in enumerate(request.headers.items):
                if name == "Via":
                    request.headers.items[i] = ("Via", first)
                    break
        return stamped

    def _on_request(self, request: SipRequest, source: Source) -> Awaitable[None] | None:
        now = self._clock()
        via = self._stamp_via(request, source)
        key = server_key(via.branch, f"{via.host}:{via.port or 5060}", request.method)
        existing = self._server_tx.get(key)
        if existing is not None:
            tx, _ = existing
            if request.method == "ACK":
                tx.ack(now)  # the ACK of a non-2xx final response ends here (§17.2.1)
                self._server_due.schedule(key, tx.deadline)
                return None
            again = tx.retransmission()
            if again is not None:
                self.transport.send_to(again, response_target(via, source))
            return None
        if request.method == "ACK":
            return self._ack(request, source)
        tx = ServerTransaction(request.method, now, reliable=source.transport != "UDP")
        self._server_tx[key] = (tx, source)
        # Checked again when the TU has not answered by then.
        self._server_due.schedule(key, now + _SERVER_TX_LIMIT)
        if request.method == "REGISTER":
            # Challenges and refusals, half of a registrar's answers, go out at once.
            screened = self.registrar.screen(request, source, now)
            if isinstance(screened, SipResponse):
                self._respond(key, tx, screened, source)
                return None
            return self._answer(
                key, tx, self.registrar.bind(request, source, now, screened), source, request
            )
        return self._answer(key, tx, self._route_request(request, source, now), source, request)

    async def _ack(self, request: SipRequest, source: Source) -> None:
        """An ACK outside any server transaction: a 2xx ACK (RFC 3261 §17.1.1.3)."""
        if self.proxy is None:
            return  # still starting: no dialog of ours can exist yet
        if self.dialogs is not None and self.dialogs.owns(request):
            await self.dialogs.in_dialog(request, source)
            return
        await self.proxy.in_dialog(request, source)

    async def _answer(
        self,
        key: tuple[str, str, str],
        tx: ServerTransaction,
        response: Awaitable[SipResponse | None],
        source: Source,
        request: SipRequest,
    ) -> None:
        try:
            answer = await response
        except Exception:
            # The bus or a store failed under the request (a NATS node lost, a stream
            # electing its leader). Unanswered, the phone would retransmit into the
            # void until its transaction times out; told 503 with Retry-After, it
            # tries again later (RFC 3261 §21.5.4).
            log.exception(
                "request failed: answered 503",
                extra={"method": request.method, "call_id": request.call_id},
            )
            if tx.state not in (State.TRYING, State.PROCEEDING):
                return  # a final response went out already
            answer = response_to(request, 503, "Service Unavailable", to_tag=_local_tag(request))
            answer.headers.add("Retry-After", str(RETRY_AFTER_SECONDS))
        if answer is not None:
            self._respond(key, tx, answer, source)

    def _respond(
        self,
        key: tuple[str, str, str],
        tx: ServerTransaction,
        response: SipResponse,
        source: Source,
    ) -> None:
        data = response.serialize()
        tx.respond(response.status, data, self._clock())
        self._server_due.schedule(key, tx.deadline)
        try:
            target = response_target(response.top_via, source)
        except (HeaderError, IndexError):
            return
        self.transport.send_to(data, target)

    async def _route_request(
        self, request: SipRequest, source: Source, now: float
    ) -> SipResponse | None:
        if self.proxy is None:
            # A request that arrives while the transports are still binding (UDP
            # listens before TCP and TLS): try again in a moment (RFC 3261 §21.5.4).
            answer = response_to(request, 503, "Starting", to_tag=_local_tag(request))
            answer.headers.add("Retry-After", "1")
            return answer
        method = request.method
        in_dialog = False
        with contextlib.suppress(HeaderError):
            in_dialog = request.to.tag is not None or bool(request.headers.get("Route"))
        if method == "SUBSCRIBE" and self.subscriptions is not None:
            return await self.subscriptions.handle(request, source)
        if method == "CANCEL":
            return await self.proxy.cancel(request, source)
        if self.dialogs is not None and self.dialogs.owns(request):
            return await self.dialogs.in_dialog(request, source)
        if in_dialog and method != "REGISTER":
            return await self.proxy.in_dialog(request, source)
        if method == "INVITE":
            if self.draining:
                # RFC 3261 §21.5.4; an RFC 3263 client tries its next server.
                answer = response_to(request, 503, "Shutting Down", to_tag=_local_tag(request))
                answer.headers.add("Retry-After", str(RETRY_AFTER_SECONDS))
                return answer
            return await self.proxy.invite(request, source)
        if method == "OPTIONS":
            response = response_to(request, 200, "OK", to_tag=_local_tag(request))
            response.headers.add("Allow", ALLOW)
            response.headers.add("Accept", "application/sdp")
            return response
        if method in ("BYE", "INFO", "UPDATE", "PRACK"):
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        response = response_to(request, 405, "Method Not Allowed", to_tag=_local_tag(request))
        response.headers.add("Allow", ALLOW)
        return response

    # --- timers ------------------------------------------------------------------------

    async def _timers(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(0.05)
            ticks += 1
            try:
                self._run_timers(self._clock())
                if ticks % 20 == 0:
                    self._follow_directory()
                if ticks % 10 == 0:
                    await self.registrar.sweep(self._clock())
            except Exception:
                log.exception("transaction timer error")

    def _run_timers(self, now: float) -> None:
        assert self.proxy is not None
        # Only the client transactions whose deadline came: a scan of all of them every
        # tick cost more than a BLF fan-out to a thousand watchers.
        for branch in self._client_due.due(now):
            client = self._client_tx.get(branch)
            if client is None:
                continue
            ctx, target = client
            deadline = ctx.deadline
            if deadline is not None and deadline <= now:
                for action in ctx.fire(now):
                    if isinstance(action, Send):
                        self.transport.send_to(action.data, target)
                    elif isinstance(action, TimedOut):
                        self._timed_out(branch)
            if ctx.state is State.TERMINATED:
                del self._client_tx[branch]
                self._forget.append((now + _FORGET_AFTER, branch))
            else:
                self._schedule(branch, ctx, now)
        while self._forget and self._forget[0][0] <= now:
            self.proxy.forget(self._forget.popleft()[1])
        # Only the server transactions with a timer due (Timer G/H/I/J) or that the TU
        # left unanswered too long.
        for key in self._server_due.due(now):
            entry = self._server_tx.get(key)
            if entry is None:
                continue
            stx, source = entry
            deadline = stx.deadline
            if deadline is not None and deadline <= now:
                for action in stx.fire(now):
                    if isinstance(action, Send):
                        self.transport.send_to(action.data, source)
                deadline = stx.deadline
            if stx.state is State.TERMINATED or (
                deadline is None and now - stx.created > _SERVER_TX_LIMIT
            ):
                del self._server_tx[key]
            else:
                self._server_due.schedule(
                    key, deadline if deadline is not None else stx.created + _SERVER_TX_LIMIT
                )

    def _timed_out(self, branch: str) -> None:
        assert self.proxy is not None
        sent = self.proxy.forwarded.get(branch)
        response = self.proxy.timed_out(branch)
        if response is not None and sent is not None:
            self.send_response(response, sent.upstream)

    # --- events ------------------------------------------------------------------------

    async def _registration_changed(
        self, aor: str, kind: str, bindings: list[Binding], source: Source, user_agent: str
    ) -> None:
        event = RegistrationChanged(
            at=datetime.now(UTC),
            origin=self.instance_id,
            aor=aor,
            kind=kind,
            contacts=[b.uri for b in bindings],
            user_agent=user_agent,
            source=f"{source.transport}:{source.host}:{source.port}",
        )
        await self._publish(subjects.edge_registration(aor, kind), msgspec.json.encode(event))

    async def _call_state(self, call: CallInfo, phase: CallPhase) -> None:
        event = CallStateChanged(
            at=datetime.now(UTC),
            origin=self.instance_id,
            call_id=call.call_id,
            phase=phase,
            caller=call.caller,
            callee=call.callee,
            caller_desk=call.caller_desk,
            callee_desk=call.callee_desk,
            from_tag=call.from_tag,
            to_tag=call.to_tag,
        )
        data = msgspec.json.encode(event)
        for party in {call.caller, call.callee}:
            if party:
                await self._publish(subjects.edge_call_state(party), data)


def _local_tag(request: SipRequest) -> str:
    return hashlib.sha1(
        f"{request.call_id}|{request.headers.get('CSeq')}".encode(), usedforsecurity=False
    ).hexdigest()[:10]
