"""The service entrypoint and the hand-over of hot-desk codes to the media path."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.dialplan import Login, Logout
from hotdesk_contracts.directory import Config, Directory, SipSettings
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.nats import ensure_jetstream
from hotdesk_sip_edge import main
from hotdesk_sip_edge.edge import SipEdge
from hotdesk_sip_edge.location import MemoryLocationStore
from hotdesk_sip_edge.login_state import LoginMap
from hotdesk_sip_edge.routing import Caller
from hotdesk_sip_edge.sip.message import SipRequest, SipResponse, parse, response_to
from hotdesk_sip_edge.sip.transport import Source
from tests.sip_edge.harness import (
    DESK_PASSWORD,
    EXT_PASSWORD,
    Phone,
    authorized_invite,
    directory,
    free_udp_port,
    running_edge,
)


def _options(port: int, phone: Phone, call_id: str) -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bK{call_id}\r\n"
        "From: <sip:HD0001@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_serve_answers_on_the_configured_port_and_stops_when_asked(
    js: JetStreamContext, nc: Client
) -> None:
    await ensure_jetstream(js)
    port = free_udp_port()
    dirs = directory()
    config = Config(
        extensions=dirs.extensions,
        desks=dirs.desks,
        sip=SipSettings(listen="127.0.0.1", port=port, advertised_host="127.0.0.1"),
    )
    ctx = ServiceContext(
        name="sip-edge",
        instance_id="edge-serve",
        config=config,
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("test"),
    )
    task = asyncio.create_task(main.serve(ctx))
    phone = Phone(port)
    try:
        for _ in range(100):
            try:
                response = await phone.request(_options(port, phone, "svc1"), timeout=0.2)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the edge never answered")
        assert response.status == 200
        allowed = {m.strip() for m in (response.headers.get("Allow") or "").split(",")}
        assert {"INVITE", "REGISTER", "SUBSCRIBE", "NOTIFY"} <= allowed
    finally:
        phone.close()
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)


class RecordingHotdesk:
    """Stands in for the media path: records the hand-over and answers 486."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Login | Logout]] = []

    async def handle(
        self, invite: SipRequest, caller: Caller, classification: Login | Logout
    ) -> SipResponse:
        self.calls.append((caller.identity, classification))
        return response_to(invite, 486, "Busy Here", to_tag="media")


async def test_hotdesk_codes_are_handed_to_the_media_path(js: JetStreamContext, nc: Client) -> None:
    async with running_edge(js, nc, directory()) as running:
        handler = RecordingHotdesk()
        assert running.edge.proxy is not None
        running.edge.proxy.hotdesk = handler
        phone = Phone(running.port)
        try:
            await phone.register("HD0001", DESK_PASSWORD)
            response = await authorized_invite(phone, "HD0001", DESK_PASSWORD, "*77*100*")
            assert response.status == 486
            assert handler.calls == [("HD0001", Login("100"))]
        finally:
            phone.close()


async def test_in_dialog_request_with_a_forged_route_is_not_relayed(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        phone = Phone(running.port)
        target = free_udp_port()
        try:
            for route in (
                f"<sip:127.0.0.1:{running.port};lr>",
                f"<sip:127.0.0.1:{running.port};lr;hd=00000000000000000000>",
            ):
                bye = (
                    f"BYE sip:victim@127.0.0.1:{target} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bKbye{len(route)}\r\n"
                    f"Route: {route}\r\n"
                    "From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:victim@127.0.0.1>;tag=b\r\n"
                    f"Call-ID: forged{len(route)}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
                ).encode()
                response = await phone.request(bye)
                assert response.status == 403
        finally:
            phone.close()


async def test_unanswered_invite_times_out_with_408_after_timer_b(
    js: JetStreamContext, nc: Client
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with running_edge(js, nc, directory(), clock=clock) as running:
        black_hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        black_hole.bind(("127.0.0.1", 0))
        phone = Phone(running.port)
        try:
            hole = black_hole.getsockname()[1]
            registered = await phone.register(
                "100", "ext-secret-100", contact=f"<sip:100@127.0.0.1:{hole}>", call_id="bh"
            )
            assert registered.status == 200
            call = asyncio.create_task(authorized_invite(phone, "101", EXT_PASSWORD, "100"))
            for _ in range(100):
                if running.edge.proxy is not None and running.edge.proxy.forwarded:
                    break
                await asyncio.sleep(0.02)
            offset[0] = 64 * 0.5 + 1  # past Timer B
            response = await asyncio.wait_for(call, 10)
            assert response.status == 408
        finally:
            phone.close()
            black_hole.close()


async def test_a_request_before_the_edge_has_started_is_told_to_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """UDP listens before TCP and TLS are bound and the proxy exists: a request in that
    moment gets 503 with Retry-After, not an internal error."""

    async def publish(subject: str, data: bytes) -> None:
        return None

    edge = SipEdge(
        settings=SipSettings(advertised_host="127.0.0.1"),
        directory=Directory,
        locations=MemoryLocationStore(),
        logins=LoginMap(),
        publish=publish,
        instance_id="edge-starting",
    )
    invite = parse(
        b"INVITE sip:112@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-starting\r\n"
        b"From: <sip:HD0001@127.0.0.1>;tag=a\r\n"
        b"To: <sip:112@127.0.0.1>\r\n"
        b"Call-ID: starting@127.0.0.1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(invite, SipRequest)
    with caplog.at_level(logging.ERROR):
        answer = await edge._route_request(invite, Source("UDP", "127.0.0.1", 5070), time.time())
    assert answer is not None
    assert (answer.status, answer.reason) == (503, "Starting")
    assert answer.headers.get("Retry-After") == "1"
    assert not caplog.records
