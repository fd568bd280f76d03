"""Calls through the edge with real SIPp on both ends: the idle-desk policy, emergency
routing, identity presentation for a logged-in desk, routing to the desk a user sits
at, CANCEL and BYE, over UDP and TCP, NAT and Path."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.messages import CallPhase, CallStateChanged
from hotdesk_sip_edge.sip.message import SipRequest, parse, response_to
from tests.sip_edge.harness import (
    DESK_PASSWORD,
    EXT_PASSWORD,
    Phone,
    RunningEdge,
    SippResult,
    directory,
    free_udp_port,
    run_sipp,
    running_edge,
    seed_login,
)


async def _wait_bound(port: int) -> None:
    """Wait until a SIPp UAS has bound its UDP port."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing bound 127.0.0.1:{port}")


async def _call(
    running: RunningEdge,
    tmp: Path,
    *,
    caller: str,
    password: str,
    dialled: str,
    uac: str = "uac_call.xml",
    uas: str | None = "uas_answer.xml",
    uas_port: int | None = None,
    transport: str = "u1",
) -> tuple[SippResult, SippResult | None]:
    uas_task = None
    if uas is not None:
        assert uas_port is not None
        uas_task = asyncio.create_task(
            run_sipp(uas, running.port, tmp=tmp, port=uas_port, uas=True, timeout=15)
        )
        await _wait_bound(uas_port)
    result = await run_sipp(
        uac,
        running.port,
        tmp=tmp,
        user=caller,
        password=password,
        service=dialled,
        transport=transport,
        keys={"caller": caller},
        timeout=15,
    )
    uas_result = await uas_task if uas_task is not None else None
    return result, uas_result


async def _register_contact(running: RunningEdge, aor: str, password: str, port: int) -> None:
    phone = Phone(running.port)
    try:
        response = await phone.register(
            aor, password, contact=f"<sip:{aor}@127.0.0.1:{port}>", call_id=f"reg-{aor}"
        )
        assert response.status == 200
    finally:
        phone.close()


def _phases(running: RunningEdge, party: str) -> list[CallPhase]:
    return [
        msgspec.json.decode(data, type=CallStateChanged).phase
        for subject, data in running.published
        if subject == f"hotdesk.edge.callstate.{party}"
    ]


def _call_states(running: RunningEdge, party: str) -> list[CallStateChanged]:
    return [
        msgspec.json.decode(data, type=CallStateChanged)
        for subject, data in running.published
        if subject == f"hotdesk.edge.callstate.{party}"
    ]


def _sent_to_tag(messages: str, start_line: str) -> str:
    """The To-tag of the first ``start_line`` response SIPp's message log shows it sent."""
    for block in re.split(r"^-{20,}.*$", messages, flags=re.M):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if len(lines) > 1 and "message sent" in lines[0] and lines[1] == start_line:
            to = next(line for line in lines if line.startswith("To:"))
            return to.split(";tag=", 1)[1].split(";")[0]
    raise AssertionError(f"no {start_line} sent: {messages}")


def _received(messages: str) -> list[tuple[str, str]]:
    """(start line, CSeq) of every message SIPp's message log shows it received."""
    out = []
    for block in re.split(r"^-{20,}.*$", messages, flags=re.M):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if len(lines) < 2 or "message received" not in lines[0]:
            continue
        cseq = next(line for line in lines if line.startswith("CSeq:"))
        out.append((lines[1], cseq.removeprefix("CSeq:").strip()))
    return out


async def test_idle_desk_may_not_call_an_outside_number(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory(trunk_port=free_udp_port())) as running:
        result, _ = await _call(
            running,
            tmp_path,
            caller="HD0002",
            password=DESK_PASSWORD,
            dialled="5551234",
            uac="uac_forbidden.xml",
            uas=None,
        )
        assert result.returncode == 0, result.stderr + result.messages
        assert "403 Desk not logged in - only emergency calls allowed" in result.messages


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_idle_desk_emergency_call_reaches_the_emergency_trunk(
    js: JetStreamContext, nc: Client, tmp_path: Path, transport: str
) -> None:
    trunk = free_udp_port()
    async with running_edge(js, nc, directory(emergency_port=trunk)) as running:
        result, uas = await _call(
            running,
            tmp_path,
            caller="HD0002",
            password=DESK_PASSWORD,
            dialled="112",
            uas_port=trunk,
            transport=transport,
        )
        assert result.returncode == 0, result.stderr + result.messages
        assert uas is not None
        assert uas.returncode == 0, uas.stderr + uas.messages
        assert re.search(r"INVITE sip:112@127\.0\.0\.1:\d+ SIP/2\.0", uas.messages)
        assert _phases(running, "HD0002") == [
            CallPhase.TRYING,
            CallPhase.RINGING,
            CallPhase.ANSWERED,
            CallPhase.ENDED,
        ]


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_emergency_call_without_emergency_trunk_gets_503(
    js: JetStreamContext,
    nc: Client,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    transport: str,
) -> None:
    # A carrier trunk is there, but none marked for emergencies: 112 must not go out
    # through it.
    carrier = free_udp_port()
    with caplog.at_level(logging.WARNING, logger="hotdesk.sip_edge"):
        async with running_edge(js, nc, directory(trunk_port=carrier)) as running:
            warnings = [
                r.getMessage()
                for r in caplog.records
                if r.name == "hotdesk.sip_edge" and r.levelno == logging.WARNING
            ]
            assert any(m.startswith("NO EMERGENCY TRUNK CONFIGURED") for m in warnings), warnings
            result, _ = await _call(
                running,
                tmp_path,
                caller="HD0001",
                password=DESK_PASSWORD,
                dialled="112",
                uac="uac_service_unavailable.xml",
                uas=None,
                transport=transport,
            )
    assert result.returncode == 0, result.stderr + result.messages
    # The challenge was answered, and the 503 answers the authenticated INVITE.
    assert _received(result.messages) == [
        ("SIP/2.0 407 Proxy Authentication Required", "1 INVITE"),
        ("SIP/2.0 503 Service Unavailable", "2 INVITE"),
    ]
    assert _phases(running, "HD0001") == []


async def test_logged_in_desk_calls_as_its_user(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    callee = free_udp_port()
    async with running_edge(js, nc, directory()) as running:
        await seed_login(js, "HD0001", "100")
        await asyncio.wait_for(running.follower.caught_up.wait(), 5)
        for _ in range(50):
            if running.logins.user_at.get("HD0001") == "100":
                break
            await asyncio.sleep(0.05)
        await _register_contact(running, "101", EXT_PASSWORD, callee)
        result, uas = await _call(
            running,
            tmp_path,
            caller="HD0001",
            password=DESK_PASSWORD,
            dialled="101",
            uas_port=callee,
        )
        assert result.returncode == 0, result.stderr + result.messages
        assert uas is not None
        assert uas.returncode == 0, uas.stderr + uas.messages
        invite = uas.messages.split("INVITE sip:", 1)[1]
        assert 'P-Asserted-Identity: "Alice Example" <sip:100@' in invite
        assert 'From: "Alice Example" <sip:HD0001@' in invite
        assert "Record-Route: <sip:127.0.0.1:" in invite
        assert _phases(running, "100")[-1] is CallPhase.ENDED
        assert _phases(running, "101")[0] is CallPhase.TRYING


async def test_call_to_a_user_rings_the_desk_where_they_sit_over_tcp(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    desk_phone = free_udp_port()
    async with running_edge(js, nc, directory()) as running:
        await _register_contact(running, "HD0001", DESK_PASSWORD, desk_phone)
        await seed_login(js, "HD0001", "100")
        for _ in range(100):
            if running.logins.desk_of.get("100") == "HD0001":
                break
            await asyncio.sleep(0.05)
        result, uas = await _call(
            running,
            tmp_path,
            caller="101",
            password=EXT_PASSWORD,
            dialled="100",
            uas_port=desk_phone,
            transport="t1",
        )
        assert result.returncode == 0, result.stderr + result.messages
        assert uas is not None
        assert uas.returncode == 0, uas.stderr + uas.messages
        assert "INVITE sip:HD0001@127.0.0.1:" in uas.messages


async def test_user_neither_registered_nor_logged_in_gets_480(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        result, _ = await _call(
            running,
            tmp_path,
            caller="101",
            password=EXT_PASSWORD,
            dialled="100",
            uac="uac_unavailable.xml",
            uas=None,
        )
        assert result.returncode == 0, result.stderr + result.messages


async def test_hotdesk_code_without_the_media_path_gets_480(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        result, _ = await _call(
            running,
            tmp_path,
            caller="HD0002",
            password=DESK_PASSWORD,
            dialled="*77*100*",
            uac="uac_unavailable.xml",
            uas=None,
        )
        assert result.returncode == 0, result.stderr + result.messages


async def test_caller_cancels_while_it_rings(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    callee = free_udp_port()
    async with running_edge(js, nc, directory()) as running:
        await _register_contact(running, "101", EXT_PASSWORD, callee)
        result, uas = await _call(
            running,
            tmp_path,
            caller="100",
            password="ext-secret-100",
            dialled="101",
            uac="uac_cancel.xml",
            uas="uas_cancelled.xml",
            uas_port=callee,
        )
        assert result.returncode == 0, result.stderr + result.messages
        assert uas is not None
        assert uas.returncode == 0, uas.stderr + uas.messages
        assert _phases(running, "101")[-1] is CallPhase.ENDED


async def test_phone_behind_nat_is_reached_where_its_register_came_from(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        phone = Phone(running.port)
        try:
            # Via and Contact name an address that does not reach the phone.
            response = await phone.register(
                "HD0001", DESK_PASSWORD, via_host="127.0.0.2", via_port=5999, rport=True
            )
            assert response.status == 200
            call = asyncio.create_task(
                run_sipp(
                    "uac_call.xml",
                    running.port,
                    tmp=tmp_path,
                    user="101",
                    password=EXT_PASSWORD,
                    service="HD0001",
                    keys={"caller": "101"},
                    timeout=5,
                )
            )
            message = parse(await phone.recv(10))
            assert isinstance(message, SipRequest)
            assert message.method == "INVITE"
            assert message.uri == "sip:HD0001@127.0.0.2:5999"
            # Decline, so the caller's SIPp ends by itself.
            busy = response_to(message, 486, "Busy Here", to_tag="nat")
            await asyncio.get_running_loop().sock_sendto(phone.sock, busy.serialize(), phone.edge)
            result = await call
            assert "486 Busy Here" in result.messages
        finally:
            phone.close()


async def test_calls_to_a_desk_registered_through_an_sbc_go_through_it(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    sbc = free_udp_port()
    async with running_edge(js, nc, directory()) as running:
        reg = await run_sipp(
            "register_via_sbc.xml",
            running.port,
            tmp=tmp_path,
            user="HD0001",
            password=DESK_PASSWORD,
            service="HD0001",
            keys={"sbc_port": str(sbc), "phone_port": "5999"},
        )
        assert reg.returncode == 0, reg.stderr + reg.messages
        bindings, _ = await running.locations.load("HD0001")
        assert bindings[0].path == [f"<sip:127.0.0.1:{sbc};lr>"]
        result, uas = await _call(
            running,
            tmp_path,
            caller="101",
            password=EXT_PASSWORD,
            dialled="HD0001",
            uas_port=sbc,
        )
        assert result.returncode == 0, result.stderr + result.messages
        assert uas is not None
        assert uas.returncode == 0, uas.stderr + uas.messages
        invite = uas.messages.split("INVITE sip:", 1)[1]
        assert invite.startswith("HD0001@127.0.0.1:5999")
        assert f"Route: <sip:127.0.0.1:{sbc};lr>" in invite


async def test_ringing_call_state_carries_the_to_tag_of_the_180_as_answered_does(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    """The callee's early dialog has the tag its 180 gave, so BLF shows one dialog (one
    dialog id, the same local tag) from early to confirmed (RFC 4235 section 4.1.1)."""
    callee = free_udp_port()
    async with running_edge(js, nc, directory()) as running:
        await _register_contact(running, "101", EXT_PASSWORD, callee)
        result, uas = await _call(
            running,
            tmp_path,
            caller="100",
            password="ext-secret-100",
            dialled="101",
            uas_port=callee,
        )
        assert result.returncode == 0, result.stderr + result.messages
        assert uas is not None
        assert uas.returncode == 0, uas.stderr + uas.messages
        tag = _sent_to_tag(uas.messages, "SIP/2.0 180 Ringing")
        assert tag
        for party in ("100", "101"):
            events = _call_states(running, party)
            assert [e.phase for e in events] == [
                CallPhase.TRYING,
                CallPhase.RINGING,
                CallPhase.ANSWERED,
                CallPhase.ENDED,
            ]
            trying, ringing, answered, ended = events
            assert trying.to_tag == ""  # nothing has answered the INVITE yet
            assert (ringing.to_tag, answered.to_tag, ended.to_tag) == (tag, tag, tag)
            assert len({e.call_id for e in events}) == 1
            assert len({e.from_tag for e in events}) == 1
            assert ringing.from_tag


async def test_call_forks_to_every_contact_and_cancels_the_losers(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    answering, ringing = free_udp_port(), free_udp_port()
    async with running_edge(js, nc, directory()) as running:
        await _register_contact(running, "101", EXT_PASSWORD, answering)
        phone = Phone(running.port)
        try:
            response = await phone.register(
                "101", EXT_PASSWORD, contact=f"<sip:101@127.0.0.1:{ringing}>", call_id="second"
            )
            assert response.status == 200
        finally:
            phone.close()
        loser = asyncio.create_task(
            run_sipp("uas_cancelled.xml", running.port, tmp=tmp_path, port=ringing, uas=True)
        )
        await _wait_bound(ringing)
        result, winner = await _call(
            running,
            tmp_path,
            caller="100",
            password="ext-secret-100",
            dialled="101",
            uas_port=answering,
        )
        lost = await loser
        assert result.returncode == 0, result.stderr + result.messages
        assert winner is not None
        assert winner.returncode == 0, winner.stderr + winner.messages
        assert lost.returncode == 0, lost.stderr + lost.messages
        assert _phases(running, "101") == [
            CallPhase.TRYING,
            CallPhase.RINGING,
            CallPhase.ANSWERED,
            CallPhase.ENDED,
        ]


async def test_trunk_named_by_host_name_is_resolved(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    trunk = free_udp_port()
    dirs = directory(emergency_port=trunk)
    named = dirs.trunks[0].__class__(name="emergency", uri=f"sip:localhost:{trunk}", emergency=True)
    dirs = dirs.__class__(extensions=dirs.extensions, desks=dirs.desks, trunks=[named])
    async with running_edge(js, nc, dirs) as running:
        result, uas = await _call(
            running,
            tmp_path,
            caller="HD0002",
            password=DESK_PASSWORD,
            dialled="112",
            uas_port=trunk,
        )
        assert result.returncode == 0, result.stderr + result.messages
        assert uas is not None
        assert uas.returncode == 0, uas.stderr + uas.messages
        assert "INVITE sip:112@localhost:" in uas.messages
