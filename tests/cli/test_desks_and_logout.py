"""``hotdesk desks`` and ``hotdesk logout <desk>`` as an admin runs them: the command in a
process of its own, against a running presence service and its admin API, with an API
token from the config file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LoggedIn, LoggedOut, LogoutReason
from hotdesk_ledger.store import EventStore
from hotdesk_presence.auth import token_digest
from hotdesk_runtime.nats import ensure_jetstream
from tests.presence.conftest import ADMIN_TOKEN, DIRECTORY
from tests.presence.console import log_in, running_presence


def config_file(tmp: Path, admin_port: int) -> Path:
    """The desks and extensions of the presence tests' directory, the admin API's port
    and the token the command authenticates with (stored as its SHA-256)."""
    lines = ["[admin]", 'listen = "127.0.0.1"', f"port = {admin_port}", ""]
    for desk in DIRECTORY.desks:
        lines += ["[[desks]]", f"name = {json.dumps(desk.name)}", f"mac = {json.dumps(desk.mac)}"]
        lines += [f"sip_password = {json.dumps(desk.sip_password)}", ""]
    for ext in DIRECTORY.extensions:
        lines += ["[[extensions]]", f"number = {json.dumps(ext.number)}"]
        lines += [f"name = {json.dumps(ext.name)}", ""]
    lines += ["[[api_tokens]]", 'name = "script"', 'role = "admin"']
    lines += [f"token_hash = {json.dumps(token_digest(ADMIN_TOKEN))}", ""]
    path = tmp / "hotdesk.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


async def hotdesk(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the ``hotdesk`` command; its exit code and what it printed."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOTDESK_")}
    # A wide terminal, so the table's cells are not wrapped.
    environment.update({"COLUMNS": "300", "PYTHONIOENCODING": "utf-8", **(env or {})})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hotdesk_cli",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=environment,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def table(output: str) -> dict[str, dict[str, str]]:
    """The rows of the printed table by desk name, each as column -> cell text."""
    rows = [
        [cell.strip() for cell in line.strip().strip("┃│").split("┃" if "┃" in line else "│")]
        for line in output.splitlines()
        if "┃" in line or "│" in line
    ]
    header, body = rows[0], rows[1:]
    assert header[0] == "desk", output
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


async def wait_state(url: str, desk: str, state: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            response = await client.get(
                f"{url}/api/v1/desks/{desk}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            if response.status_code == 200 and response.json()["state"] == state:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{desk} never became {state}")


async def test_desks_shows_who_sits_where_and_logout_frees_the_desk(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    await ensure_jetstream(js)
    async with running_presence(nc, js, DIRECTORY) as url:
        config = config_file(tmp_path, int(url.rsplit(":", 1)[1]))
        await log_in(js, "HD0001", "100")
        await wait_state(url, "HD0001", "logged_in")

        code, output = await hotdesk(
            "desks", "--config", str(config), env={"HOTDESK_TOKEN": ADMIN_TOKEN}
        )
        assert code == 0, output
        rows = table(output)
        assert list(rows) == ["HD0001", "HD0002", "HD0003"]
        seated = rows["HD0001"]
        assert (seated["state"], seated["user"], seated["name"]) == (
            "logged_in",
            "100",
            "Ada Lovelace",
        )
        for desk in ("HD0002", "HD0003"):
            assert (rows[desk]["state"], rows[desk]["user"]) == ("idle", "")

        code, output = await hotdesk(
            "logout", "HD0001", "--config", str(config), "--token", ADMIN_TOKEN
        )
        assert code == 0, output
        assert output.strip() == "HD0001: logged out"
        events, _ = await EventStore(js).load(subjects.desk_ledger("HD0001"))
        assert [type(e) for e in events] == [LoggedIn, LoggedOut]
        logout = events[-1]
        assert isinstance(logout, LoggedOut)
        assert (logout.user, logout.reason, logout.cause.actor) == (
            "100",
            LogoutReason.ADMIN,
            "admin:script",
        )

        await wait_state(url, "HD0001", "idle")
        code, output = await hotdesk("desks", "--config", str(config), "--token", ADMIN_TOKEN)
        assert code == 0, output
        freed = table(output)["HD0001"]
        assert (freed["state"], freed["user"], freed["last_reason"]) == ("idle", "", "admin")
        assert freed["last_actor"] == "admin:script"
