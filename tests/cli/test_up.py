"""``hotdesk up`` as a real process: the ledger survives restarts, reloads are validated
and a removed desk's user is logged out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
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
from hotdesk_runtime.config import hash_secret, verify_secret
from hotdesk_runtime.demo import ADMIN_HASH_FILE, SIP_PASSWORDS_FILE
from hotdesk_runtime.directory import load_directory
from tests.support.natsserver import free_port

HOTDESK = [sys.executable, "-m", "hotdesk_cli"]


def config_text(
    nats_port: int,
    *,
    with_second_desk: bool = True,
    mac2: str = "001565aabbcd",
    with_third_desk: bool = False,
) -> str:
    second = (
        f'[[desks]]\nname = "HD0002"\nmac = "{mac2}"\nsip_password = "s2"\n\n'
        if with_second_desk
        else ""
    )
    if with_third_desk:
        second += '[[desks]]\nname = "HD0003"\nmac = "001565aabbce"\nsip_password = "s3"\n\n'

    return f"""\
[nats]
embedded_port = {nats_port}

[sip]
listen = "127.0.0.1"
port = {free_port()}

[admin]
listen = "127.0.0.1"
port = {free_port()}

[provisioning]
listen = "127.0.0.1"
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

    def __init__(
        self, config: Path | None, data_dir: Path, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = [*HOTDESK, "up", "--data-dir", str(data_dir)]
        if config is not None:
            self.argv += ["--config", str(config)]
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, stderr=err, env=self.env
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

        # SIGHUP reloads too.
        config.write_text(
            config_text(port, with_second_desk=False, with_third_desk=True), encoding="utf-8"
        )
        assert up.proc is not None
        up.proc.send_signal(signal.SIGHUP)
        for _ in range(200):
            directory = await load_directory(js)
            if directory is not None and directory.desk("HD0003") is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("SIGHUP did not publish the new directory")
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


async def test_demo_prints_its_generated_secrets_on_first_start_only(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTDESK_")}
    for key in ("NATS__EMBEDDED_PORT", "SIP__PORT", "ADMIN__PORT", "PROVISIONING__PORT"):
        env[f"HOTDESK_{key}"] = str(free_port())
    data_dir = tmp_path / "data"
    up = Up(None, data_dir, tmp_path / "up.log", env)
    try:
        await up.start()
        assert await up.stop() == 0
        banner = "".join(up.output)
        [password] = re.findall(r"Admin login:\s+admin / (\S+)", banner)
        assert "HD0001" in banner
        assert "100 Alice Archer (PIN 1000)" in banner
        stored = (data_dir / ADMIN_HASH_FILE).read_text().strip()
        assert verify_secret(stored, password)
        sip_file = data_dir / SIP_PASSWORDS_FILE
        assert sip_file.stat().st_mode & 0o777 == 0o600
        sip_passwords = json.loads(sip_file.read_text())
        shown = dict(re.findall(r"(HD\d{4}) .* SIP password (\S+)", banner))
        assert shown == {d: sip_passwords[d] for d in ("HD0001", "HD0002", "HD0003")}
        assert len(set(sip_passwords.values())) == len(sip_passwords) == 7
        resolved = (data_dir / "resolved-config-sip-edge.json").read_text()
        assert json.loads(resolved)["sip"]["listen"] == "127.0.0.1"

        up.output.clear()
        await up.start()
        assert await up.stop() == 0
        again = "".join(up.output)
        assert "Admin login" not in again
        assert "SIP password " not in again
        assert all(secret not in again for secret in sip_passwords.values())
        assert (data_dir / ADMIN_HASH_FILE).read_text().strip() == stored
        assert json.loads(sip_file.read_text()) == sip_passwords
    finally:
        with contextlib.suppress(Exception):
            await up.kill()


async def test_nothing_outlives_a_killed_supervisor(
    workspace: tuple[Path, Path, int], tmp_path: Path
) -> None:
    config, data_dir, port = workspace
    up = Up(config, data_dir, tmp_path / "up.log")
    try:
        await up.start()
    finally:
        await up.kill()
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        writer.close()
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the embedded nats-server outlived its supervisor")
