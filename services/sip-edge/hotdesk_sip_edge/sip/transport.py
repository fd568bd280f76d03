"""SIP transports over asyncio: UDP, TCP and TLS (RFC 3261 §18, RFC 5626 §4.4.1).

The transport layer turns bytes into parsed messages for one ``on_message`` callback
and back. It never raises into the event loop: malformed or oversized input is answered
400/413/513 where a response can be built, otherwise dropped and counted. A per-source
token bucket limits how many messages one address may send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .message import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    frame_length,
    parse,
)

log = logging.getLogger("hotdesk.sip_edge.transport")

UDP_BUFFER_BYTES = 4 * 1024 * 1024
"""Default UDP socket receive and send buffer. The kernel default (~208 KiB) overflows
when a BLF fan-out to a thousand watchers brings back a thousand 200 OKs at once: the
dropped answers make every NOTIFY retransmit (RFC 3261 §17.1.2.2 timer E)."""


def size_udp_buffers(sock: socket.socket, size: int) -> tuple[int, int]:
    """Ask for ``size``-byte receive and send buffers on ``sock``; return what the
    kernel granted (Linux caps ``SO_RCVBUF`` at ``net.core.rmem_max`` unless the
    process may use ``SO_RCVBUFFORCE``)."""
    for force, plain in (
        (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
        (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF),
    ):
        done = False
        if force is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, force, size)
                done = True
        if not done:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )


CRLF = b"\r\n"
DOUBLE_CRLF = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: the transport and the peer's real address."""

    transport: str
    """``UDP``, ``TCP`` or ``TLS``."""
    host: str
    port: int


MessageHandler = Callable[[SipRequest | SipResponse, Source], Awaitable[None] | None]
"""Handles one message: at once, returning None, or returning what is left to await
(run as a task of its own). An ``async def`` handler is always the latter."""


class TokenBucket:
    """Per-key token buckets (pure: the caller passes ``now``)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_keys = max_keys

    def allow(self, key: str, now: float) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            # Forget full buckets first: they carry no state worth keeping.
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst}
        self._buckets[key] = (tokens - 1.0, now)
        return True


def error_response(error: SipParseError) -> SipResponse | None:
    """The response to a request that failed to parse, when one can be built
    (RFC 3261 §8.2.6: copy Via, From, To, Call-ID and CSeq)."""
    partial = error.partial
    if partial is None:
        return None
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in partial.headers.get_all(name):
            headers.add(name, value)
    return SipResponse(headers, b"", error.status, error.reason)


class SipTransport:
    """UDP + TCP (+ TLS) listeners sharing one message handler.

    ``stats`` counts ``dropped_malformed``, ``answered_malformed``, ``rate_limited``,
    ``keepalive``, ``received`` and ``sent``.
    """

    def __init__(
        self,
        handler: MessageHandler,
        *,
        max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        rate: float = 200.0,
        burst: int = 400,
        clock: Callable[[], float] | None = None,
        udp_buffer_bytes: int = UDP_BUFFER_BYTES,
    ) -> None:
        self._handler = handler
        self.udp_buffer_bytes = udp_buffer_bytes
        self.max_bytes = max_bytes
        self.limiter = TokenBucket(rate, burst)
        self.stats: Counter[str] = Counter()
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._streams: dict[tuple[str, str, int], asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_connections_per_source = 1024
        """Inbound TCP/TLS connections one address may hold open at once (high enough
        for a whole office of phones behind one NAT address)."""
        self._per_source: Counter[str] = Counter()
        self.udp_port = 0
        self.udp_receive_buffer = 0
        """The UDP socket's receive buffer in bytes as the kernel counts it (what
        ``SO_RCVBUF`` reads back; 0 before :meth:`start`)."""
        self.tcp_port = 0
        self.tls_port = 0

    async def start(
        self,
        host: str,
        port: int,
        *,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Listen on UDP and TCP ``port`` (and TLS ``tls_port`` with a context)."""
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._udp = udp
        self.udp_port = udp.get_extra_info("sockname")[1]
        sock = udp.get_extra_info("socket")
        if sock is not None and self.udp_buffer_bytes > 0:
            rcv, snd = size_udp_buffers(sock, self.udp_buffer_bytes)
            log.info("UDP buffers", extra={"rcvbuf": rcv, "sndbuf": snd})
        if sock is not None:
            self.udp_receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        tcp = await asyncio.start_server(
            lambda r, w: self._serve_stream(r, w, "TCP"), host, port or self.udp_port
        )
        self._servers.append(tcp)
        self.tcp_port = tcp.sockets[0].getsockname()[1]
        if tls_context is not None and tls_port is not None:
            tls = await asyncio.start_server(
                lambda r, w: self._serve_stream(r, w, "TLS"), host, tls_port, ssl=tls_context
            )
            self._servers.append(tls)
            self.tls_port = tls.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._udp is not None:
            self._udp.close()
        for server in self._servers:
            server.close()
        for writer in list(self._streams.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            await server.wait_closed()

    # --- receiving ---------------------------------------------------------------------

    def _admit(self, source: Source) -> bool:
        if self.limiter.allow(source.host, self._clock()):
            return True
        self.stats["rate_limited"] += 1
        return False

    def datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """One UDP datagram arrived."""
        source = Source("UDP", addr[0], addr[1])
        # RFC 5626 §4.4.1 / §3.5.1: a CRLF keep-alive on UDP (STUN is not used here).
        if data in (CRLF, DOUBLE_CRLF) or not data.strip():
            self.stats["keepalive"] += 1
            return
        if not self._admit(source):
            return
        self._dispatch(data, source, stream=False)

    def _dispatch(self, data: bytes, source: Source, *, stream: bool) -> None:
        try:
            message = parse(data, max_bytes=self.max_bytes, stream=stream)
        except SipParseError as exc:
            response = error_response(exc)
            if response is None:
                self.stats["dropped_malformed"] += 1
                log.debug("dropped malformed message", extra={"source": source.host})
                return
            self.stats["answered_malformed"] += 1
            self.send_to(response.serialize(), source)
            return
        self.stats["received"] += 1
        try:
            pending = self._handler(message, source)
        except Exception:
            self._handler_failed(message)
            return
        if pending is not None:
            task = asyncio.get_running_loop().create_task(self._handle(pending, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, pending: Awaitable[None], message: SipRequest | SipResponse) -> None:
        try:
            await pending
        except Exception:
            self._handler_failed(message)

    def _handler_failed(self, message: SipRequest | SipResponse) -> None:
        # One bad message must never stop the edge; the handler's bug is logged.
        self.stats["handler_errors"] += 1
        log.exception("error handling a SIP message", extra={"call_id": message.call_id})

    async def _serve_stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        kind: str,
        *,
        inbound: bool = True,
    ) -> None:
        peer = writer.get_extra_info("peername")
        source = Source(kind, peer[0], peer[1])
        if inbound and self._per_source[source.host] >= self.max_connections_per_source:
            # One address may not exhaust the edge's sockets.
            self.stats["connections_refused"] += 1
            writer.close()
            return
        if inbound:
            self._per_source[source.host] += 1
        key = (kind, source.host, source.port)
        self._streams[key] = writer
        buffer = bytearray()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buffer += chunk
                while buffer:
                    # RFC 5626 §4.4.1: a double CRLF ping is answered by a single CRLF pong.
                    if buffer.startswith(DOUBLE_CRLF):
                        del buffer[:4]
                        self.stats["keepalive"] += 1
                        writer.write(CRLF)
                        continue
                    if buffer.startswith(CRLF):
                        if len(buffer) < 4 and DOUBLE_CRLF.startswith(bytes(buffer)):
                            break
                        del buffer[:2]
                        continue
                    try:
                        length = frame_length(buffer, self.max_bytes)
                    except SipParseError as exc:
                        # The framing is lost: answer if possible, then close
                        # (RFC 4475 §3.3.9).
                        head = bytes(buffer[: self.max_bytes])
                        cut = head.find(DOUBLE_CRLF)
                        if cut >= 0:
                            # Answer from the header section alone, with the framing
                            # error's own status (413 for an oversized body).
                            head = head[: cut + 4]
                        try:
                            parse(head, max_bytes=self.max_bytes, stream=False)
                        except SipParseError as inner:
                            inner.status, inner.reason = exc.status, exc.reason
                            response = error_response(inner)
                            if response is not None:
                                writer.write(response.serialize())
                        self.stats["dropped_malformed"] += 1
                        log.info("closing stream with broken framing: %s", exc)
                        return
                    if length is None:
                        break
                    frame = bytes(buffer[:length])
                    del buffer[:length]
                    if self._admit(source):
                        self._dispatch(frame, source, stream=True)
        except (ConnectionError, OSError):
            return
        finally:
            self._streams.pop(key, None)
            if inbound:
                self._per_source[source.host] -= 1
                if self._per_source[source.host] <= 0:
                    del self._per_source[source.host]
            writer.close()

    # --- sending -----------------------------------------------------------------------

    def send_to(self, data: bytes, target: Source) -> bool:
        """Send ``data`` to ``target``: over an open connection for TCP/TLS (RFC 3261
        §18.2.2: responses go back on the connection the request came in on), as a
        datagram for UDP. False when no connection to the target is open."""
        self.stats["sent"] += 1
        if target.transport == "UDP":
            if self._udp is None:
                return False
            self._udp.sendto(data, (target.host, target.port))
            return True
        writer = self._streams.get((target.transport, target.host, target.port))
        if writer is None or writer.is_closing():
            return False
        writer.write(data)
        return True

    async def connect(self, target: Source) -> bool:
        """Open a TCP connection to ``target`` when none is open (for forwarding)."""
        key = (target.transport, target.host, target.port)
        if key in self._streams and not self._streams[key].is_closing():
            return True
        if target.transport != "TCP":
            return False
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), 5.0
            )
        except (OSError, TimeoutError):
            return False
        self._streams[key] = writer
        task = asyncio.get_running_loop().create_task(
            self._serve_stream_outbound(reader, writer, target)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _serve_stream_outbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: Source
    ) -> None:
        await self._serve_stream(reader, writer, target.transport, inbound=False)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, transport: SipTransport) -> None:
        self._owner = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._owner.datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: nothing to answer.
        self._owner.stats["udp_errors"] += 1
