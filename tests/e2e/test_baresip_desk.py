"""A real baresip desk phone registers at the real edge with digest, dials a hot-desk
login code (answering the edge's 407), sends the PIN with ``sndcode`` (RFC 4733 events),
and hears the IVR's prompts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.events import LoggedIn
from hotdesk_sip_edge.location import KvLocationStore
from hotdesk_sip_edge.media import g711, wav
from tests.e2e.baresip import Control, baresip_config
from tests.e2e.system import DESK_PASSWORD, PINS, free_udp_port, prompt_codes, running_system
from tests.support.natsserver import free_port

pytestmark = pytest.mark.e2e


async def registered(js: JetStreamContext, aor: str) -> None:
    """Wait until the edge holds a binding for ``aor`` (baresip registers as it starts,
    before its control connection is up to report it)."""
    store = await KvLocationStore.open(js)
    for _ in range(200):
        bindings, _ = await store.load(aor)
        if bindings:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{aor} never registered")


async def test_baresip_desk_logs_in_with_sndcode_and_hears_the_prompts(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    async with running_system(nc, js, (35700, 35799)) as system:
        ctrl_port = free_port()
        account = (
            f"<sip:HD0002@127.0.0.1:{system.sip_port}>;auth_pass={DESK_PASSWORD};"
            "regint=60;audio_codecs=PCMU"
        )
        baresip_config(tmp_path, free_udp_port(), ctrl_port, account)
        phone = await asyncio.create_subprocess_exec(
            "baresip",
            "-f",
            str(tmp_path),
            "-t",
            "40",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        control = None
        try:
            control = await Control.connect(ctrl_port)
            await registered(js, "HD0002")
            await control.command("dial", f"sip:*77*101*@127.0.0.1:{system.sip_port}")
            await control.wait_for("CALL_ESTABLISHED")
            await asyncio.sleep(1.0)  # hear the start of "enter your PIN"
            await control.command("sndcode", PINS["101"] + "#")
            await control.wait_for("CALL_CLOSED")  # the IVR hung up after "logged in"
            events = await system.desk_ledger("HD0002")
        finally:
            if control is not None:
                control.close()
            if phone.returncode is None:
                phone.terminate()
                await asyncio.wait_for(phone.wait(), 10)
    assert [(type(e), e.user) for e in events] == [(LoggedIn, "101")]
    dumps = sorted((tmp_path / "dump").glob("*-dec.wav"))
    assert len(dumps) == 1
    # baresip's μ-law decoder rounds a few codes differently from the ITU tables, so
    # compare codes: encoding its decoded audio again gives back exactly what it received.
    heard = g711.ulaw_encode(wav.parse(dumps[0].read_bytes()).data)
    enter_pin = prompt_codes("en/enter-pin")
    assert heard.find(enter_pin[:4000]) >= 0  # half a second, then the digits cut it short
    logged_in = prompt_codes("en/logged-in")
    assert heard.find(logged_in[: len(logged_in) // 160 * 160]) >= 0  # all of it
