"""``hotdesk up`` as a real process: the ledger survives restarts, reloads are validated
and a removed desk's user is logged out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest

from hotdesk_cli.up import READY_LINE
from hotdesk_contracts import streams, subjects
from hotdesk_contracts.commands import LogIn
from hotdesk_contracts.events import Cause, LoggedIn, LoggedOut, LogoutReason
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.config import hash_secret
from tests.support.natsserver import free_port

HOTDESK = [sys.executable, "-m", "hotdesk_cli"]


def config_text(
    nats_port: int, *, with_second_desk: bool = True, mac2: str = "001565aabbcd"
) -> str:
    second = (
        f'[[desks]]\nname = "HD0002"\nmac = "{mac2}"\nsip_password = "s2"\n\n'
        if with_second_desk
        else ""
    )
    return f"""\
[nats]
embedded_port = {nats_port}

[sip]
port = {free_port()}

[admin]
port = {free_port()}

[provisioning]
port = {free_port()}

[[extensions]]
number = "100"
name = "Alice"
pin_hash = "{hash_secret("1000")}"

[[desks]]
name = "HD0001"
mac = "001565aabbcc"
sip_password = "s1"

{second}[[trunks]]
name = "emergency"
uri = "sip:127.0.0.1:{free_port()}"
emergency = true
"""


class Up:
    """One ``hotdesk up`` child process, stopped with SIGINT like a Ctrl-C."""

    def __init__(self, config: Path, data_dir: Path, log: Path) -> None:
        self.argv = [*HOTDESK, "up", "--config", str(config), "--data-dir", str(data_dir)]
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, stderr=err
            )
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
            if not line:
                raise AssertionError(f"hotdesk up exited: {self.log.read_text()[-3000:]}")
            self.output.append(line.decode())
            if READY_LINE in self.output[-1]:
                return

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        assert self.proc.stdout is not None
        rest = await asyncio.wait_for(self.proc.stdout.read(), 60)
        self.output.append(rest.decode())
        return await asyncio.wait_for(self.proc.wait(), 60)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def hotdesk(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *HOTDESK, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path, int]:
    config = tmp_path / "hotdesk.toml"
    port = free_port()
    config.write_text(config_text(port), encoding="utf-8")
    return config, tmp_path / "data", port


async def test_ledger_survives_restarts_and_reloads_are_validated(
    workspace: tuple[Path, Path, int], tmp_path: Path
) -> None:
    config, data_dir, port = workspace
    up = Up(config, data_dir, tmp_path / "up.log")
    try:
        await up.start()
        assert any(f"nats://127.0.0.1:{port}" in line for line in up.output)
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        ledger = Ledger(EventStore(js))
        correlation = uuid.uuid4().hex
        await ledger.execute(
            LogIn(
                command_id=correlation,
                at=datetime.now(UTC),
                cause=Cause(actor="user:100"),
                correlation_id=correlation,
                desk="HD0002",
                user="100",
            )
        )

        # A broken file is refused, with the problem and its line; nothing changes.
        config.write_text(config_text(port, mac2="not-a-mac"), encoding="utf-8")
        code, out = await hotdesk("reload", "--config", str(config))
        assert code == 1, out
        assert "desks[1].mac (line" in out
        assert "expected 12 hex digits" in out
        assert (await ledger.desk("HD0002")).user == "100"

        # Removing the desk someone sits at logs them out.
        config.write_text(config_text(port, with_second_desk=False), encoding="utf-8")
        code, out = await hotdesk("reload", "--config", str(config))
        assert code == 0, out
        assert "removed desks logged out: HD0002" in out
        assert (await ledger.desk("HD0002")).user is None
        await nc.close()

        assert await up.stop() == 0
        assert "hotdesk stopped" in up.output[-1]

        await up.start()
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        events, _ = await EventStore(js).load(subjects.desk_ledger("HD0002"))
        assert [type(e) for e in events] == [LoggedIn, LoggedOut]
        last = events[-1]
        assert isinstance(last, LoggedOut)
        assert last.reason is LogoutReason.DESK_REMOVED
        info = await js.stream_info(streams.LEDGER.name)
        assert info.state.messages == 2
        await nc.close()
        assert await up.stop() == 0
    finally:
        with contextlib.suppress(Exception):
            await up.kill()
