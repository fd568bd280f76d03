"""SIPp processes for the end-to-end tests, each bounded by its own ``-timeout``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.system import (
    DESK_PASSWORD,
    SippRun,
    System,
    free_sipp_media_port,
    free_udp_port,
)


@dataclass
class Sipp:
    """A SIPp process running in the background; :meth:`finish` waits for its end."""

    proc: asyncio.subprocess.Process
    log: Path
    port: int

    async def finish(self, timeout: float = 30.0) -> SippRun:
        """Wait for SIPp to end by itself (killed after ``timeout``); its outcome."""
        try:
            _, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            err = b"killed: SIPp outlived the test's bound"
        finally:
            await self.kill()
        return SippRun(
            self.proc.returncode if self.proc.returncode is not None else -1,
            err.decode(errors="replace"),
            self.log.read_text(errors="replace") if self.log.exists() else "",
        )

    async def kill(self) -> None:
        """Stop SIPp if it still runs."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def start_sipp(
    tmp: Path,
    scenario: Path,
    *args: str,
    name: str,
    port: int | None = None,
    remote: str = "",
    calls: int = 1,
    timeout_s: int = 30,
) -> Sipp:
    """Start SIPp on 127.0.0.1:``port`` (a free one by default) with ``scenario``; a UAC
    when ``remote`` is given. ``args`` are further SIPp options (``-key``, ``-au`` …)."""
    port = port if port is not None else free_udp_port()
    log = tmp / f"{name}-messages.log"
    argv = [remote] if remote else []
    argv += [
        "-sf",
        str(scenario),
        "-m",
        str(calls),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        # Its own media port: SIPp binds one even when it sends no RTP.
        "-mp",
        str(free_sipp_media_port()),
        *args,
        "-timeout",
        f"{timeout_s}s",
        "-timeout_error",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(log),
    ]
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp,
    )
    return Sipp(proc, log, port)


async def sipp_register(
    system: System, tmp: Path, *, desk: str, contact_port: int, name: str = "register"
) -> SippRun:
    """A SIPp desk (re-)registers, its Contact on ``contact_port``."""
    sipp = await start_sipp(
        tmp,
        Path(__file__).resolve().parent / "scenarios" / "register.xml",
        "-au",
        desk,
        "-ap",
        DESK_PASSWORD,
        "-key",
        "desk",
        desk,
        "-key",
        "contact_port",
        str(contact_port),
        name=name,
        remote=f"127.0.0.1:{system.sip_port}",
        timeout_s=10,
    )
    return await sipp.finish(15)
