"""A real SIP client (SIPp) subscribes, gets its NOTIFYs and unsubscribes.

The notifier here is the BLF pure core on a loopback UDP socket: it reads the SUBSCRIBE,
answers it, and sends the NOTIFYs :func:`build_notify` makes. SIPp checks the headers
and bodies it receives and answers the NOTIFYs within the dialog.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import cast

from hotdesk_sip_edge.blf.dialog_info import Dialog, Participant
from hotdesk_sip_edge.blf.notify import build_notify, subscribe_request, subscribe_response
from hotdesk_sip_edge.blf.subscriptions import NotifyToSend, Subscriptions
from hotdesk_sip_edge.sip.headers import Via
from hotdesk_sip_edge.sip.message import SipRequest, SipResponse, parse
from hotdesk_sip_edge.sip.uri import parse_uri
from tests.sip_edge.harness import free_udp_port

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "subscribe_dialog.xml"
ANSWERED = Dialog(
    id="d1",
    state="confirmed",
    call_id="call-1@edge",
    local_tag="tt",
    remote_tag="ft",
    direction="recipient",
    local=Participant(identity="sip:101@127.0.0.1"),
    remote=Participant(identity="sip:100@127.0.0.1"),
)


class _Notifier(asyncio.DatagramProtocol):
    """Answers SUBSCRIBEs; after the first NOTIFY is answered, reports a call."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.subs = Subscriptions(["101"], min_expires=60, max_expires=3600)
        self.transport: asyncio.DatagramTransport | None = None
        self.notify_answers: list[int] = []
        self.errors: list[Exception] = []
        self._branches = itertools.count(1)
        self._now = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._handle(data, addr)
        except Exception as exc:  # surfaced by the test, not lost in the loop's log
            self.errors.append(exc)

    def _handle(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse(data)
        assert self.transport is not None
        if isinstance(message, SipRequest):
            fields = subscribe_request(
                message,
                extension=parse_uri(message.uri).user or "",
                entity_uri="sip:101@127.0.0.1",
                authenticated=True,
            )
            outcome = self.subs.subscribe(fields, self._now)
            contact = f"sip:101@127.0.0.1:{self.port}"
            response = subscribe_response(message, outcome, contact=contact)
            self.transport.sendto(response.serialize(), addr)
            if outcome.notify is not None:
                self._send(outcome.notify)
        elif isinstance(message, SipResponse) and message.cseq.method == "NOTIFY":
            self.notify_answers.append(message.status)
            if message.cseq.seq == 1:
                self._now = 1.0
                for notify in self.subs.state_changed("101", [ANSWERED], self._now):
                    self._send(notify)

    def _send(self, notify: NotifyToSend) -> None:
        assert self.transport is not None
        via = Via("UDP", "127.0.0.1", self.port, (("branch", f"z9hG4bK-n{next(self._branches)}"),))
        request = build_notify(notify, via=via, contact=f"sip:101@127.0.0.1:{self.port}")
        target = parse_uri(request.uri)
        self.transport.sendto(request.serialize(), (target.host, target.port or 5060))


async def test_sipp_blf_key_gets_initial_call_and_final_notifies(tmp_path: Path) -> None:
    port = free_udp_port()
    loop = asyncio.get_running_loop()
    transport, notifier = await loop.create_datagram_endpoint(
        lambda: _Notifier(port), local_addr=("127.0.0.1", port)
    )
    try:
        sipp = await asyncio.create_subprocess_exec(
            "sipp",
            f"127.0.0.1:{port}",
            "-sf",
            str(SCENARIO),
            "-s",
            "101",
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_udp_port()),
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
        )
        try:
            _, stderr = await asyncio.wait_for(sipp.communicate(), 30)
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.wait()
        logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*errors.log"))
        assert notifier.errors == []
        assert sipp.returncode == 0, stderr.decode()[-2000:] + logs[-2000:]
        assert notifier.notify_answers == [200, 200, 200]
        assert len(notifier.subs) == 0
    finally:
        transport.close()
