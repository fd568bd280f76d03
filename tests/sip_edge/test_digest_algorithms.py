"""Digest algorithms with real clients (RFC 8760): a current libre stack registers with
SHA-256 when the edge offers it first, SIPp (MD5 only) when MD5 comes first; unknown
users and wrong passwords fail alike under SHA-256."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_sip_edge.auth import AuthResult
from hotdesk_sip_edge.sip.digest import parse_authorization
from tests.sip_edge.harness import DESK_PASSWORD, directory, run_sipp, running_edge


async def _libre_register(user: str, password: str, port: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sip_edge.libre_client",
        user,
        password,
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _record_algorithms(monkeypatch: pytest.MonkeyPatch, edge: Any) -> list[str]:
    """The algorithm of the credentials the edge checked, per authenticated request."""
    used: list[str] = []
    check: Callable[..., AuthResult] = edge.auth.check

    def recording(request: Any, header: str, *args: Any) -> AuthResult:
        values = request.headers.get_all(header)
        if values:
            used.append(parse_authorization(values[0]).algorithm)
        return check(request, header, *args)

    monkeypatch.setattr(edge.auth, "check", recording)
    return used


async def test_a_current_libre_client_registers_with_sha256_when_it_is_offered_first(
    js: JetStreamContext, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_edge(js, nc, directory(), digest_algorithms=["SHA-256", "MD5"]) as running:
        used = _record_algorithms(monkeypatch, running.edge)
        result = await _libre_register("HD0001", DESK_PASSWORD, running.port)
        assert result == {"registered": True, "status": 200}
        # The REGISTER and the un-REGISTER both answered the SHA-256 challenge.
        assert used == ["SHA-256", "SHA-256"]
        changes = [s for s, _ in running.published if s.startswith("hotdesk.edge.registration.")]
        assert "hotdesk.edge.registration.HD0001.registered" in changes


async def test_a_current_libre_client_uses_md5_when_md5_is_preferred(
    js: JetStreamContext, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_edge(js, nc, directory(), digest_algorithms=["MD5", "SHA-256"]) as running:
        used = _record_algorithms(monkeypatch, running.edge)
        result = await _libre_register("HD0001", DESK_PASSWORD, running.port)
        assert result == {"registered": True, "status": 200}
        assert used == ["MD5", "MD5"]


async def test_under_sha256_an_unknown_user_fails_exactly_like_a_wrong_password(
    js: JetStreamContext, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_edge(js, nc, directory(), digest_algorithms=["SHA-256"]) as running:
        used = _record_algorithms(monkeypatch, running.edge)
        wrong = await _libre_register("HD0001", "not-the-password", running.port)
        unknown = await _libre_register("HD9999", "not-the-password", running.port)
        assert wrong == unknown == {"registered": False, "status": 403}
        assert used == ["SHA-256", "SHA-256"]
        assert running.edge.auth.stats["auth_failures"] == 2


async def test_sipp_registers_with_md5_while_sha256_is_offered_second(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory(), digest_algorithms=["MD5", "SHA-256"]) as running:
        result = await run_sipp(
            "register.xml",
            running.port,
            tmp=tmp_path,
            user="HD0001",
            password=DESK_PASSWORD,
            service="HD0001",
            keys={"expires": "300"},
        )
        assert result.returncode == 0, result.stderr + result.messages
        bindings, _ = await running.locations.load("HD0001")
        assert [b.uri.split(";")[0].rsplit(":", 1)[0] for b in bindings] == ["sip:HD0001@127.0.0.1"]
