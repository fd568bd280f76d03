"""BLF keys through the real edge: SUBSCRIBE with digest, NOTIFYs from the BLF read
model, unsubscribe; other event packages are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import streams
from hotdesk_sip_edge.sip.message import SipResponse
from tests.e2e.system import DESK_PASSWORD, SCENARIOS, free_udp_port, running_system
from tests.sip_edge.harness import Phone

pytestmark = pytest.mark.e2e

CONFIRMED = {
    "value": {
        "ext": "101",
        "state": "confirmed",
        "call_id": "call-1@edge",
        "direction": "recipient",
        "local_tag": "tt",
        "remote_tag": "ft",
        "remote": "100",
        "active": [
            {
                "call_id": "call-1@edge",
                "state": "confirmed",
                "direction": "recipient",
                "local_tag": "tt",
                "remote_tag": "ft",
                "remote": "100",
            }
        ],
    }
}


async def test_blf_key_subscribes_with_digest_and_sees_a_call_come_and_the_end(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    async with running_system(nc, js, (35900, 35999)) as system:
        log = tmp_path / "blf-messages.log"
        sipp = await asyncio.create_subprocess_exec(
            "sipp",
            f"127.0.0.1:{system.sip_port}",
            "-sf",
            str(SCENARIOS / "blf_subscribe.xml"),
            "-s",
            "101",
            "-au",
            "HD0002",
            "-ap",
            DESK_PASSWORD,
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_udp_port()),
            "-timeout",
            "25s",
            "-timeout_error",
            "-nostdin",
            "-trace_msg",
            "-message_file",
            str(log),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
        )
        try:
            # Once SIPp has answered the initial NOTIFY, a call reaches extension 101.
            for _ in range(300):
                if log.exists() and log.read_text(errors="replace").count("CSeq: 1 NOTIFY") >= 2:
                    break
                await asyncio.sleep(0.05)
            kv = await js.key_value(streams.BLF.bucket)
            await kv.put("101", msgspec.json.encode(CONFIRMED))
            _, stderr = await asyncio.wait_for(sipp.communicate(), 35)
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.wait()
    messages = log.read_text(errors="replace") if log.exists() else ""
    assert sipp.returncode == 0, stderr.decode()[-2000:] + messages[-3000:]


async def test_subscribe_to_another_event_package_is_refused_with_bad_event(
    nc: Client, js: JetStreamContext
) -> None:
    async with running_system(nc, js, (36000, 36099)) as system:
        phone = Phone(system.sip_port)
        try:
            request = (
                f"SUBSCRIBE sip:101@127.0.0.1:{system.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bKpresence1\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:HD0002@127.0.0.1>;tag=s1\r\n"
                "To: <sip:101@127.0.0.1>\r\nCall-ID: presence-1\r\nCSeq: 1 SUBSCRIBE\r\n"
                f"Contact: <sip:HD0002@127.0.0.1:{phone.port}>\r\nEvent: presence\r\n"
                "Expires: 600\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            response = await phone.request(request)
        finally:
            phone.close()
    assert isinstance(response, SipResponse)
    assert (response.status, response.headers.get("Allow-Events")) == (489, "dialog")
