"""The edge runs the timers of its own client transactions (BLF and check-sync
NOTIFYs): retransmissions until answered, Timer F, Timer K (RFC 3261 §17.1.2.2)."""

from __future__ import annotations

import asyncio
import socket
import time

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_sip_edge.awaited import AwaitedTransaction
from hotdesk_sip_edge.sip.transaction import State
from hotdesk_sip_edge.sip.transport import Source
from tests.sip_edge.harness import directory, running_edge


def _notify(edge_port: int, phone_port: int, branch: str) -> bytes:
    return (
        f"NOTIFY sip:HD0001@127.0.0.1:{phone_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{edge_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.1>;tag=e\r\n"
        f"To: <sip:HD0001@127.0.0.1>;tag=p\r\nCall-ID: {branch}\r\nCSeq: 2 NOTIFY\r\n"
        "Event: dialog\r\nSubscription-State: active;expires=60\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _ok(notify: bytes) -> bytes:
    head = notify.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    kept = [h for h in head if h.split(b":", 1)[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")]
    return b"\r\n".join([b"SIP/2.0 200 OK", *kept, b"Content-Length: 0"]) + b"\r\n\r\n"


async def _received(sock: socket.socket, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), timeout)


async def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the edge's timers did not run"
        await asyncio.sleep(0.02)


async def test_a_notify_is_retransmitted_until_answered_then_ends_after_timer_k(
    js: JetStreamContext, nc: Client
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with running_edge(js, nc, directory(), clock=clock) as running:
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind(("127.0.0.1", 0))
        phone.setblocking(False)
        try:
            target = Source("UDP", "127.0.0.1", phone.getsockname()[1])
            branch = "z9hG4bKtimers1"
            data = _notify(running.port, target.port, branch)
            assert await running.edge.send_serialized(data, target)
            tx = AwaitedTransaction(data, "NOTIFY", clock(), reliable=False)
            running.edge.track(branch, tx, target)
            assert await _received(phone) == data
            offset[0] += 0.6  # past Timer E (T1)
            assert await _received(phone) == data
            offset[0] += 1.1  # past the doubled Timer E
            assert await _received(phone) == data
            phone.sendto(_ok(data), ("127.0.0.1", running.port))
            # The answer ends the retransmissions: the transaction is Completed.
            await _until(lambda: tx.final.done())
            assert tx.final.result() == 200
            assert tx.state is State.COMPLETED
            offset[0] += 5.5  # past Timer K (T4)
            await _until(lambda: tx.state is State.TERMINATED)
        finally:
            phone.close()


async def test_an_unanswered_notify_times_out_with_timer_f_among_many_answered_ones(
    js: JetStreamContext, nc: Client
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with running_edge(js, nc, directory(), clock=clock) as running:
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind(("127.0.0.1", 0))
        try:
            target = Source("UDP", "127.0.0.1", phone.getsockname()[1])
            answered = []
            for n in range(300):
                data = _notify(running.port, target.port, f"z9hG4bKmany{n}")
                tx = AwaitedTransaction(data, "NOTIFY", clock(), reliable=False)
                running.edge.track(f"z9hG4bKmany{n}", tx, target)
                phone.sendto(_ok(data), ("127.0.0.1", running.port))
                answered.append(tx)
            silent_data = _notify(running.port, target.port, "z9hG4bKsilent")
            silent = AwaitedTransaction(silent_data, "NOTIFY", clock(), reliable=False)
            running.edge.track("z9hG4bKsilent", silent, target)
            await _until(lambda: all(tx.final.done() for tx in answered), timeout=20)
            assert {tx.final.result() for tx in answered} == {200}
            assert not silent.final.done()
            offset[0] += 64 * 0.5 + 1  # past Timer F
            await _until(lambda: silent.final.done())
            assert silent.final.result() == 0
            assert silent.state is State.TERMINATED
            assert all(tx.state is State.TERMINATED for tx in answered)  # Timer K is shorter
        finally:
            phone.close()


async def test_the_answer_to_the_edges_own_request_is_taken_at_once_without_a_task(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        phone = ("127.0.0.1", 9)  # never sent to: the answer is handed in directly
        branch = "z9hG4bKinstant"
        data = _notify(running.port, phone[1], branch)
        tx = AwaitedTransaction(data, "NOTIFY", time.time(), reliable=False)
        running.edge.track(branch, tx, Source("UDP", *phone))
        tasks = len(asyncio.all_tasks())
        running.edge.transport.datagram(_ok(data), phone)
        assert tx.final.done()
        assert tx.final.result() == 200
        assert len(asyncio.all_tasks()) == tasks
