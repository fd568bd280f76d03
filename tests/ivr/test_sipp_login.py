"""A real SIPp places a hot-desk login call and types the PIN as RFC 2833 events replayed
from Debian sip-tester's captures; the edge's media, the IVR bridge and the IVR service
answer it over a real nats-server, and the ledger records the login."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Config, Desk, Extension
from hotdesk_contracts.events import LoggedIn
from hotdesk_ivr import main as ivr_main
from hotdesk_ivr import prompts
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.context import ServiceContext
from hotdesk_sip_edge.media import g711, wav
from hotdesk_sip_edge.media.ivr_bridge import IvrCommandRouter
from hotdesk_sip_edge.media.prompt_store import ObjectStorePromptSource
from tests.sip_edge.media.mini_uas import MiniUas
from tests.sip_edge.media.pcap import DTMF_CAPTURES
from tests.sip_edge.media.rtp_peer import RtpPeer
from tests.support.natsserver import free_port

SCENARIO = Path(__file__).resolve().parents[1] / "sip_edge" / "media" / "sipp" / "login_rfc2833.xml"
PIN = "1234"
pytestmark = pytest.mark.e2e
EDGE = "edge-sipp"


INFO = """  <send>
    <![CDATA[

      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: desk <sip:HD0001@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: @CSEQ@ INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=@DIGIT@
      Duration=160

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="100"/>"""


def scenario(tmp_path: Path, digits: str, media_port: int, *, info: bool = False) -> Path:
    steps = []
    for n, digit in enumerate(digits, start=2):
        if info:
            steps.append(INFO.replace("@CSEQ@", str(n)).replace("@DIGIT@", digit))
            continue
        steps.append(
            f'  <nop><action><exec play_pcap_audio="{DTMF_CAPTURES[digit]}"/></action></nop>\n'
            '  <pause milliseconds="400"/>'
        )
    text = SCENARIO.read_text().replace("@DIGITS@", "\n".join(steps))
    # The SDP names a listener of the test's, so it can hear the first prompt; once
    # SIPp's own RTP arrives the edge answers there instead (symmetric RTP).
    text = text.replace("m=audio [media_port]", f"m=audio {media_port}")
    path = tmp_path / "login.xml"
    path.write_text(text)
    return path


@pytest.fixture
async def ivr_service(nc: Client, js: JetStreamContext) -> AsyncIterator[None]:
    cfg = Config(
        extensions=[Extension(number="100", name="Ann", pin_hash=PasswordHasher().hash(PIN))],
        desks=[Desk(name="HD0001", mac="001565000001", sip_password="a")],
    )
    ctx = ServiceContext(
        name="ivr",
        instance_id="ivr-sipp",
        config=cfg,
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("ivr-sipp"),
    )
    task = asyncio.create_task(ivr_main.serve(ctx))
    for _ in range(500):
        if {r.state for r in await prompts.status(js)} == {prompts.OK}:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    yield None
    ctx.stopping.set()
    await asyncio.wait_for(task, 10)


async def run_sipp(uas_port: int, scenario_path: Path, service: str, cwd: Path) -> None:
    sipp = await asyncio.create_subprocess_exec(
        "sipp",
        f"127.0.0.1:{uas_port}",
        "-sf",
        str(scenario_path),
        "-s",
        service,
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port()),
        "-timeout",
        "30s",
        "-timeout_error",
        "-nostdin",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    try:
        _, stderr = await asyncio.wait_for(sipp.communicate(), 40)
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
    assert sipp.returncode == 0, stderr.decode()[-2000:]


async def test_sipp_logs_in_with_sip_info_digits(
    nc: Client, js: JetStreamContext, ivr_service: None, tmp_path: Path
) -> None:
    router = IvrCommandRouter(nc, EDGE)
    await router.start()
    uas = await MiniUas(
        nc,
        router,
        ObjectStorePromptSource(js),
        caller="HD0001",
        edge_id=EDGE,
        port_range=(33000, 33999),
    ).start()
    listener = await RtpPeer().start()
    try:
        path = scenario(tmp_path, PIN + "#", listener.port, info=True)
        await run_sipp(uas.port, path, "*77*100*", tmp_path)
        events, _ = await EventStore(js).load(subjects.desk_ledger("HD0001"))
        assert [(type(e), e.user) for e in events] == [(LoggedIn, "100")]  # type: ignore[union-attr]
    finally:
        listener.close()
        uas.close()
        await router.close()


async def test_sipp_logs_in_with_rfc2833_digits_from_the_captures(
    nc: Client, js: JetStreamContext, ivr_service: None, tmp_path: Path
) -> None:
    router = IvrCommandRouter(nc, EDGE)
    await router.start()
    uas = await MiniUas(
        nc,
        router,
        ObjectStorePromptSource(js),
        caller="HD0001",
        edge_id=EDGE,
        port_range=(33000, 33999),
    ).start()
    listener = await RtpPeer().start()
    try:
        path = scenario(tmp_path, PIN + "#", listener.port)
        await run_sipp(uas.port, path, "*77*100*", tmp_path)
        events, _ = await EventStore(js).load(subjects.desk_ledger("HD0001"))
        assert [(type(e), e.user) for e in events] == [(LoggedIn, "100")]  # type: ignore[union-attr]
        # What reached the SDP address before SIPp's RTP did: "enter PIN", as encoded
        # from the bundled prompt file.
        heard = []
        while not listener.received.empty():
            heard.append(listener.received.get_nowait().packet)
        assert heard
        assert heard[0].marker
        enter_pin = next(p for p in prompts.bundled() if p.prompt_id == "en/enter-pin")
        expected = g711.ulaw_encode(wav.parse(enter_pin.path.read_bytes()).data)
        assert b"".join(p.payload for p in heard) == expected[: 160 * len(heard)]
    finally:
        listener.close()
        uas.close()
        await router.close()
