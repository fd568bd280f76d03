"""A real baresip dials a hot-desk login code and sends the PIN with ``sndcode`` (RFC 4733
events); its decoded audio is compared with the prompt files the IVR played."""

from __future__ import annotations

import asyncio
import json
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
from tests.support.natsserver import free_port

pytestmark = pytest.mark.e2e
PIN = "1234"
EDGE = "edge-baresip"


def baresip_config(folder: Path, sip_port: int, ctrl_port: int) -> None:
    (folder / "dump").mkdir(parents=True)
    (folder / "config").write_text(
        f"""poll_method epoll
sip_listen 127.0.0.1:{sip_port}
audio_player aubridge,none
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
module ausine.so
audio_alert aubridge,none
module_path /usr/lib/baresip/modules
module g711.so
module aubridge.so
module sndfile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
snd_path {folder / "dump"}
rtp_ports 37000-37999
"""
    )
    (folder / "accounts").write_text("<sip:HD0001@127.0.0.1>;regint=0;audio_codecs=PCMU\n")


class Control:
    """baresip's ctrl_tcp: netstring-framed JSON commands and events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Control:
        for _ in range(200):
            try:
                return cls(*await asyncio.open_connection("127.0.0.1", port))
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError("baresip's control port never opened")

    async def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.writer.write(b"%d:%s," % (len(body), body))
        await self.writer.drain()

    async def event(self) -> dict[str, object]:
        length = int((await self.reader.readuntil(b":"))[:-1])
        data = await self.reader.readexactly(length + 1)
        return dict(json.loads(data[:-1]))

    async def wait_for(self, kind: str, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while (await self.event()).get("type") != kind:
                pass

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def ivr_service(nc: Client, js: JetStreamContext) -> AsyncIterator[None]:
    cfg = Config(
        extensions=[Extension(number="100", name="Ann", pin_hash=PasswordHasher().hash(PIN))],
        desks=[Desk(name="HD0001", mac="001565000001", sip_password="a")],
    )
    ctx = ServiceContext(
        name="ivr",
        instance_id="ivr-baresip",
        config=cfg,
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("ivr-baresip"),
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


def prompt_codes(prompt_id: str) -> bytes:
    """The μ-law the edge sends for a bundled prompt."""
    bundled = next(p for p in prompts.bundled() if p.prompt_id == prompt_id)
    return g711.ulaw_encode(wav.parse(bundled.path.read_bytes()).data)


async def test_baresip_logs_in_with_sndcode_and_hears_the_prompts(
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
        port_range=(34000, 34999),
    ).start()
    ctrl_port = free_port()
    baresip_config(tmp_path, free_port(), ctrl_port)
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
        await control.command("dial", f"sip:*77*100*@127.0.0.1:{uas.port}")
        await control.wait_for("CALL_ESTABLISHED")
        await asyncio.sleep(1.0)  # hear the start of "enter your PIN"
        await control.command("sndcode", PIN + "#")
        await control.wait_for("CALL_CLOSED")  # the IVR hung up after "logged in"
        events, _ = await EventStore(js).load(subjects.desk_ledger("HD0001"))
        assert [(type(e), e.user) for e in events] == [(LoggedIn, "100")]  # type: ignore[union-attr]
    finally:
        if control is not None:
            control.close()
        if phone.returncode is None:
            phone.terminate()
            await asyncio.wait_for(phone.wait(), 10)
        uas.close()
        await router.close()
    dumps = sorted((tmp_path / "dump").glob("*-dec.wav"))
    assert len(dumps) == 1
    # baresip's μ-law decoder rounds a few codes differently from the ITU tables, so
    # compare codes: encoding its decoded audio again gives back exactly what it received.
    heard = g711.ulaw_encode(wav.parse(dumps[0].read_bytes()).data)
    enter_pin = prompt_codes("en/enter-pin")
    assert heard.find(enter_pin[:4000]) >= 0  # half a second, then the digits cut it short
    logged_in = prompt_codes("en/logged-in")
    assert heard.find(logged_in[: len(logged_in) // 160 * 160]) >= 0  # all of it
