"""A real baresip (headless, driven over ctrl_tcp) registers at the edge with digest
auth and makes an emergency call through it to a SIPp trunk."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.sip_edge.harness import (
    DESK_PASSWORD,
    directory,
    free_udp_port,
    run_sipp,
    running_edge,
)
from tests.sip_edge.test_calls_sipp import _wait_bound


def _config(folder: Path, sip_port: int, ctrl_port: int, edge_port: int) -> None:
    (folder / "config").write_text(
        f"""poll_method epoll
sip_listen 127.0.0.1:{sip_port}
audio_player aubridge,none
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
audio_alert aubridge,none
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module aubridge.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
rtp_ports 38000-38999
"""
    )
    (folder / "accounts").write_text(
        f"<sip:HD0001@127.0.0.1:{edge_port}>;auth_pass={DESK_PASSWORD};regint=600;"
        "audio_codecs=PCMU\n"
    )


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

    async def wait_for(self, kind: str, timeout: float = 15.0) -> dict[str, object]:
        async with asyncio.timeout(timeout):
            while True:
                length = int((await self.reader.readuntil(b":"))[:-1])
                data = await self.reader.readexactly(length + 1)
                event = dict(json.loads(data[:-1]))
                if event.get("type") == kind:
                    return event

    def close(self) -> None:
        self.writer.close()


async def test_baresip_registers_and_calls_through_the_edge(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    trunk = free_udp_port()
    async with running_edge(js, nc, directory(emergency_port=trunk)) as running:
        ctrl_port = free_udp_port()
        _config(tmp_path, free_udp_port(), ctrl_port, running.port)
        phone = await asyncio.create_subprocess_exec(
            "baresip",
            "-f",
            str(tmp_path),
            "-t",
            "30",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        control = None
        try:
            control = await Control.connect(ctrl_port)
            # The REGISTER may finish before the control connection opens: watch the
            # location store rather than the event.
            for _ in range(200):
                bindings, _ = await running.locations.load("HD0001")
                if bindings:
                    break
                await asyncio.sleep(0.05)
            assert len(bindings) == 1
            assert bindings[0].user_agent.startswith("baresip")
            uas = asyncio.create_task(
                run_sipp(
                    "uas_answer_sdp.xml",
                    running.port,
                    tmp=tmp_path,
                    port=trunk,
                    uas=True,
                    keys={"media_port": str(free_udp_port())},
                )
            )
            await _wait_bound(trunk)
            await control.command("dial", f"sip:112@127.0.0.1:{running.port}")
            await control.wait_for("CALL_ESTABLISHED")
            await control.command("hangup")
            await control.wait_for("CALL_CLOSED")
            result = await uas
            assert result.returncode == 0, result.stderr + result.messages
            assert "INVITE sip:112@127.0.0.1:" in result.messages
        finally:
            if control is not None:
                control.close()
            if phone.returncode is None:
                phone.terminate()
                await asyncio.wait_for(phone.wait(), 10)
