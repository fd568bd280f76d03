"""IVR replicas as a deployment runs them: ``hotdesk run ivr`` processes on the test's
nats-server, each logging JSON lines to a file of its own."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.directory import Config
from hotdesk_ivr import prompts
from hotdesk_runtime.process import die_with_parent

READY = "prompt sets ready"
"""What the IVR logs just before it joins the queue group that claims calls."""


def _quoted(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def config_toml(cfg: Config, nats_url: str) -> str:
    """The directory of ``cfg`` (desks, extensions, policies) for ``nats_url``, logging
    JSON at INFO: what an IVR needs of a config file."""
    lines = ["[nats]", f"url = {_quoted(nats_url)}", ""]
    lines += ["[telemetry]", 'log_format = "json"', 'log_level = "INFO"', ""]
    lines += ["[policies]"]
    for key, value in sorted(msgspec.to_builtins(cfg.policies).items()):
        lines.append(f"{key} = {json.dumps(value)}")
    lines.append("")
    for desk in cfg.desks:
        lines += ["[[desks]]", f"name = {_quoted(desk.name)}", f"mac = {_quoted(desk.mac)}"]
        lines += [f"sip_password = {_quoted(desk.sip_password)}", ""]
    for ext in cfg.extensions:
        lines += ["[[extensions]]", f"number = {_quoted(ext.number)}"]
        lines += [f"name = {_quoted(ext.name)}", f"pin_hash = {_quoted(ext.pin_hash)}", ""]
    return "\n".join(lines)


@dataclass
class IvrProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log lines so far (anything else it printed is left out)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def said(self, message: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("message") == message]


async def _ready(ivr: IvrProcess, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if ivr.proc.poll() is not None:
            tail = ivr.log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"hotdesk run ivr exited with {ivr.proc.returncode}: {tail}")
        if ivr.said(READY):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"hotdesk run ivr never got ready: {ivr.log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def ivr_processes(
    nc: Client, js: JetStreamContext, cfg: Config, tmp: Path, count: int
) -> AsyncIterator[list[IvrProcess]]:
    """``count`` ``hotdesk run ivr`` processes on ``nc``'s server with ``cfg``'s
    directory, until the block ends; each has installed the prompts (or found them
    installed) and joined the queue group when the block starts."""
    url = nc.connected_url
    assert url is not None, "the test's connection is not connected"
    path = tmp / "ivr.toml"
    path.write_text(config_toml(cfg, f"nats://{url.hostname}:{url.port}"), encoding="utf-8")
    started: list[IvrProcess] = []
    try:
        for n in range(count):
            log = tmp / f"ivr-{n}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "hotdesk_cli", "run", "ivr", "--config", str(path)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent(),
                )
            started.append(IvrProcess(proc, log))
        for ivr in started:
            await _ready(ivr)
        assert {r.state for r in await prompts.status(js)} == {prompts.OK}
        await asyncio.sleep(0.5)  # READY is logged just before the queue subscription
        yield started
    finally:
        for ivr in started:
            await asyncio.to_thread(_stop, ivr.proc)
