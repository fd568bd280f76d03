"""Transports under hostile and odd input: malformed and oversized messages, CRLF
keep-alives, rate limiting, OPTIONS, retransmissions; torture samples over the wire."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_sip_edge.sip.message import SipParseError, SipResponse, parse
from hotdesk_sip_edge.sip.transport import TokenBucket
from tests.sip_edge.harness import Phone, directory, running_edge

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "sip-samples"


def _loopback(data: bytes, port: int) -> bytes:
    """Rewrite the Via sent-by to 127.0.0.1:``port`` (where the test listens) and IPv4
    literals in the headers to 127.0.0.1; the body is left alone."""
    head, sep, body = data.partition(b"\r\n\r\n")
    head = re.sub(rb"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", b"127.0.0.1", head)
    head = re.sub(
        rb"(Via:\s*SIP\s*/\s*2\.0\s*/\s*\w+\s+)[^;\s,]+",
        rb"\g<1>127.0.0.1:" + str(port).encode(),
        head,
        flags=re.IGNORECASE,
    )
    return head + sep + body


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2)
    assert bucket.allow("a", 0.0)
    assert bucket.allow("a", 0.0)
    assert not bucket.allow("a", 0.0)
    assert bucket.allow("b", 0.0)
    assert bucket.allow("a", 0.5)


async def test_malformed_request_is_answered_400_and_garbage_is_dropped_and_counted(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        phone = Phone(running.port)
        try:
            bad = _loopback((SAMPLES / "rfc4475/invalid/clerr.dat").read_bytes(), phone.port)
            response = await phone.request(bad)
            assert response.status == 400
            # badvers's own Via says SIP/7.0 too, so nothing could route a response;
            # with a SIP/2.0 Via the edge can say 505 (RFC 3261 §21.5.7).
            version = _loopback(
                (SAMPLES / "rfc4475/invalid/badvers.dat")
                .read_bytes()
                .replace(b"SIP/7.0/UDP", b"SIP/2.0/UDP"),
                phone.port,
            )
            response = await phone.request(version)
            assert response.status == 505
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(phone.sock, b"\x00\xffnot sip at all", phone.edge)
            options = (
                f"OPTIONS sip:127.0.0.1:{running.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bKo1\r\n"
                "From: <sip:HD0001@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\n"
                "Call-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            response = await phone.request(options)
            assert response.status == 200
            assert running.edge.transport.stats["dropped_malformed"] == 1
            assert running.edge.transport.stats["answered_malformed"] == 2
        finally:
            phone.close()


async def test_oversized_request_is_answered_513(js: JetStreamContext, nc: Client) -> None:
    async with running_edge(js, nc, directory(), max_message_bytes=1200) as running:
        phone = Phone(running.port)
        try:
            big = _loopback((SAMPLES / "rfc4475/valid/longreq.dat").read_bytes(), phone.port)
            response = await phone.request(big)
            assert response.status == 513
        finally:
            phone.close()


async def test_every_torture_message_leaves_the_edge_answering(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        phone = Phone(running.port)
        loop = asyncio.get_running_loop()
        try:
            for path in sorted((SAMPLES / "rfc4475").rglob("*.dat")):
                await loop.sock_sendto(
                    phone.sock, _loopback(path.read_bytes(), phone.port), phone.edge
                )
            options = (
                f"OPTIONS sip:127.0.0.1:{running.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bKalive\r\n"
                "From: <sip:x@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\n"
                "Call-ID: alive\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            await loop.sock_sendto(phone.sock, options, phone.edge)
            for _ in range(200):
                try:
                    message = parse(await phone.recv())
                except SipParseError:
                    continue  # a 400 echoes the request's own broken headers (§8.2.6)
                if isinstance(message, SipResponse) and message.call_id == "alive":
                    assert message.status == 200
                    break
            assert running.edge.transport.stats["handler_errors"] == 0
        finally:
            phone.close()


async def test_tcp_double_crlf_ping_gets_a_crlf_pong_and_framing_works(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        try:
            writer.write(b"\r\n\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
            local = writer.get_extra_info("sockname")[1]
            options = (
                f"OPTIONS sip:127.0.0.1:{running.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bKt1\r\n"
                "From: <sip:x@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\n"
                "Call-ID: tcp1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            # Split across writes: the framer must wait for the whole message.
            writer.write(options[:40])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(options[40:])
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"SIP/2.0 200 OK")
        finally:
            writer.close()


async def test_retransmitted_register_is_answered_from_the_transaction(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        phone = Phone(running.port)
        loop = asyncio.get_running_loop()
        try:
            data = phone.register_bytes("HD0001", call_id="rt")
            await loop.sock_sendto(phone.sock, data, phone.edge)
            first = await phone.recv()
            await loop.sock_sendto(phone.sock, data, phone.edge)
            again = await phone.recv()
            assert first == again  # same nonce: no new challenge was computed
        finally:
            phone.close()


async def test_flood_from_one_source_is_rate_limited(js: JetStreamContext, nc: Client) -> None:
    async with running_edge(
        js, nc, directory(), rate_limit_per_second=1.0, rate_limit_burst=3
    ) as running:
        phone = Phone(running.port)
        loop = asyncio.get_running_loop()
        try:
            for i in range(10):
                await loop.sock_sendto(
                    phone.sock, phone.register_bytes("HD0001", call_id=f"f{i}"), phone.edge
                )
            for _ in range(3):
                await phone.recv()
            for _ in range(100):
                if running.edge.transport.stats["rate_limited"] >= 7:
                    break
                await asyncio.sleep(0.01)
            assert running.edge.transport.stats["rate_limited"] == 7
        finally:
            phone.close()


async def test_stream_with_an_oversized_body_is_answered_413_and_closed(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        try:
            local = writer.get_extra_info("sockname")[1]
            writer.write(
                (
                    f"MESSAGE sip:100@127.0.0.1:{running.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bKbig\r\n"
                    "From: <sip:x@127.0.0.1>;tag=o\r\nTo: <sip:100@127.0.0.1>\r\n"
                    "Call-ID: big1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 1000000\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"SIP/2.0 413 Request Entity Too Large")
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()


async def test_one_source_may_hold_only_so_many_connections(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        running.edge.transport.max_connections_per_source = 2
        streams = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(3)]
        try:
            # The third is closed by the edge at once; the first two answer a ping.
            assert await asyncio.wait_for(streams[2][0].read(), 5) == b""
            for reader, writer in streams[:2]:
                writer.write(b"\r\n\r\n")
                await writer.drain()
                assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
            assert running.edge.transport.stats["connections_refused"] == 1
        finally:
            for _, writer in streams:
                writer.close()
