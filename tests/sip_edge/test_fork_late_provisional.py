"""A forked INVITE answered on one branch: a provisional response another branch sends
after that is not relayed to the caller (RFC 3261 §16.7 step 5 forwards provisional
responses only while the server transaction may still send them; once a 2xx went
upstream it is Accepted, RFC 6026 §7.1, and a 180 after the 200 aborts real UACs)."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_sip_edge.sip.message import SipRequest, SipResponse, parse, response_to
from tests.sip_edge.harness import EXT_PASSWORD, Phone, authorized_invite, directory, running_edge


async def _next_request(phone: Phone, method: str) -> SipRequest:
    """The next request of ``method`` the phone receives (retransmissions included)."""
    while True:
        message = parse(await phone.recv(10))
        if isinstance(message, SipRequest) and message.method == method:
            return message


async def _answer(phone: Phone, request: SipRequest, status: int, reason: str) -> None:
    response = response_to(request, status, reason, to_tag=f"uas{phone.port}")
    if status < 300 and request.method == "INVITE":
        response.headers.add("Contact", f"<sip:101@127.0.0.1:{phone.port}>")
    await asyncio.get_running_loop().sock_sendto(phone.sock, response.serialize(), phone.edge)


async def test_a_ringing_branch_after_the_answer_is_not_relayed(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        answering, late = Phone(running.port), Phone(running.port)
        caller = Phone(running.port)
        try:
            for phone, binding in ((answering, "a"), (late, "b")):
                response = await phone.register("101", EXT_PASSWORD, call_id=f"reg-{binding}")
                assert response.status == 200
            call = asyncio.create_task(authorized_invite(caller, "100", "ext-secret-100", "101"))
            to_answering = await _next_request(answering, "INVITE")
            to_late = await _next_request(late, "INVITE")

            await _answer(answering, to_answering, 200, "OK")
            final = await call
            assert final.status == 200
            # The edge cancels the other branch once the 200 went upstream; only then
            # does that branch ring, as a slow phone whose 180 crossed the CANCEL would.
            cancel = await _next_request(late, "CANCEL")
            await _answer(late, to_late, 180, "Ringing")
            await _answer(late, cancel, 200, "OK")
            await _answer(late, to_late, 487, "Request Terminated")
            # The edge ACKs the 487 after it handled the 180: whatever it relayed for
            # the 180 was sent to the caller before this ACK was sent.
            await _next_request(late, "ACK")

            options = (
                f"OPTIONS sip:127.0.0.1:{running.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};branch=z9hG4bKmark\r\n"
                "From: <sip:100@127.0.0.1>;tag=m\r\nTo: <sip:127.0.0.1>\r\n"
                "Call-ID: mark\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            await asyncio.get_running_loop().sock_sendto(caller.sock, options, caller.edge)
            after_answer: list[int] = []
            while True:
                message = parse(await caller.recv(10))
                assert isinstance(message, SipResponse)
                if message.call_id == "mark":
                    break
                after_answer.append(message.status)
            assert all(status >= 200 for status in after_answer), after_answer
        finally:
            for phone in (answering, late, caller):
                phone.close()
