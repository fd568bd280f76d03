"""The edge's server transactions (RFC 3261 §17.2.2): a retransmitted request is answered
from the transaction until Timer J ends it, and only then is it forgotten."""

from __future__ import annotations

import asyncio
import socket
import time

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_sip_edge.sip.message import SipResponse, parse
from tests.sip_edge.harness import directory, running_edge


def _options(phone_port: int, branch: str) -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{phone_port};branch={branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\n"
        f"To: <sip:127.0.0.1>\r\nCall-ID: {branch}@probe\r\nCSeq: 7 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def _answer(sock: socket.socket, timeout: float = 5.0) -> SipResponse:
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), timeout)
    message = parse(data)
    assert isinstance(message, SipResponse)
    return message


async def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the edge's timers did not run"
        await asyncio.sleep(0.02)


async def test_a_retransmitted_request_is_answered_alike_until_timer_j_ends_the_transaction(
    js: JetStreamContext, nc: Client
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with running_edge(js, nc, directory(), clock=clock) as running:
        edge = running.edge
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind(("127.0.0.1", 0))
        phone.setblocking(False)
        try:
            request = _options(phone.getsockname()[1], "z9hG4bKserver1")
            phone.sendto(request, ("127.0.0.1", running.port))
            first = await _answer(phone)
            assert first.status == 200
            key = ("z9hG4bKserver1", f"127.0.0.1:{phone.getsockname()[1]}", "OPTIONS")
            assert key in edge._server_tx

            # Within Timer J (64*T1 = 32 s over UDP) a retransmission gets the same
            # response from the transaction, with the same To tag.
            offset[0] = 20.0
            await asyncio.sleep(0.2)
            phone.sendto(request, ("127.0.0.1", running.port))
            again = await _answer(phone)
            assert (again.status, again.to.tag) == (first.status, first.to.tag)
            assert key in edge._server_tx

            # After Timer J the edge forgets it without being asked.
            offset[0] = 33.0
            await _until(lambda: key not in edge._server_tx)
        finally:
            phone.close()


async def test_thousands_of_ended_transactions_leave_no_entry_behind(
    js: JetStreamContext, nc: Client
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    # One source sends them all: the per-source limit meant for phones is lifted.
    async with running_edge(
        js, nc, directory(), clock=clock, rate_limit_per_second=1e6, rate_limit_burst=10**6
    ) as running:
        edge = running.edge
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind(("127.0.0.1", 0))
        phone.setblocking(False)
        try:
            port = phone.getsockname()[1]
            for batch in range(20):
                for n in range(100):
                    branch = f"z9hG4bKmany{batch}-{n}"
                    phone.sendto(_options(port, branch), ("127.0.0.1", running.port))
                for _ in range(100):
                    assert (await _answer(phone)).status == 200
            assert len(edge._server_tx) == 2000
            offset[0] = 40.0
            await _until(lambda: not edge._server_tx)
            assert len(edge._server_due) == 0
        finally:
            phone.close()
