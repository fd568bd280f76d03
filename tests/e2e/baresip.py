"""A headless baresip desk phone for the end-to-end tests: ``ctrl_tcp`` for commands and
events, ``aubridge``/``sndfile`` so what it hears is written to a WAV file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path


def baresip_config(folder: Path, sip_port: int, ctrl_port: int, account: str) -> None:
    """A baresip config folder: loopback only, G.711, received audio dumped to
    ``folder/dump``; ``account`` is the line of its ``accounts`` file."""
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
    (folder / "accounts").write_text(account + "\n")


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
