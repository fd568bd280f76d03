"""The load: SIPp desks logging in through one edge each, and what SIPp saw per call.

Each :class:`SippLoad` is one SIPp process placing logins at a fixed rate on one edge
(the scenario and the plan of :mod:`bench.logins.scenario`: REGISTER, INVITE
``*77*<ext>*``, the PIN as RFC 2833 events, then the edge's BYE). Its desks are its own,
so two loads never log in at the same desk. A load can be told to place no more calls
(SIGUSR1: SIPp finishes the calls it has and exits), as a phone stops using a server
that no longer answers. Check-sync NOTIFYs the edge sends the desks after a login are
answered 200 by an out-of-call scenario, as a phone does.

What SIPp saw comes from its ``-trace_shortmsg`` log, one line per message: per Call-ID,
the responses to its INVITE and REGISTER and whether the edge's BYE came
(:func:`parse_short_messages`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.logins.scenario import Login, injection_file, scenario_xml
from bench.register.sipp import binary as sipp_binary
from bench.register.targets import HOST, free_port

OUT_OF_CALL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="desk answers the edge's check-sync NOTIFY">
  <recv request="NOTIFY"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]ooc[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
</scenario>
"""
CHALLENGES = (401, 407)
"""Digest challenges: part of the scenario, not errors."""
MEDIA_PORTS = (21000, 29000)
"""Where SIPp's media ports are taken from: below the kernel's ephemeral range (so no
other process's free-port pick lands in them) and below the edges' RTP ranges."""


class SippFailed(RuntimeError):
    """SIPp did not run its calls (it could not start, or stopped before placing them)."""


def free_udp_block(size: int, span: tuple[int, int] = MEDIA_PORTS) -> int:
    """The first of ``size`` consecutive UDP ports free on 127.0.0.1: SIPp binds its
    audio RTP on ``-mp`` and video RTP two ports up."""
    for _ in range(200):
        base = random.randrange(span[0], span[1] - size, 2)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((HOST, port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise RuntimeError(f"no {size} consecutive free UDP ports in {span}")


@dataclass
class CallSeen:
    """One call as SIPp saw it (times are SIPp's wall-clock epoch seconds)."""

    call_id: str
    started: float
    ended: float
    finals: list[tuple[str, int]] = field(default_factory=list)
    """(method, status) of every final response received, in order."""
    answered: bool = False
    """The INVITE got its 200 OK."""
    bye: bool = False
    """The edge's BYE came (after the confirmation or an error prompt)."""

    @property
    def sip_error(self) -> int | None:
        """The first final error response to the call's REGISTER or INVITE that is not
        a digest challenge (responses to the BYE SIPp sends for a call it aborted are
        not the edge refusing the call)."""
        for method, status in self.finals:
            if method in ("REGISTER", "INVITE") and status >= 300 and status not in CHALLENGES:
                return status
        return None


def parse_short_messages(text: str) -> dict[str, CallSeen]:
    """Per Call-ID, what SIPp's ``-trace_shortmsg`` log shows of the calls it placed.

    A line is ``date TAB time TAB epoch TAB S|R TAB Call-ID TAB CSeq TAB first line``.
    Calls SIPp did not start itself (the edge's out-of-call NOTIFYs) are left out.
    """
    calls: dict[str, CallSeen] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 7:
            continue
        try:
            epoch = float(parts[2])
        except ValueError:
            continue
        direction, call_id, cseq, first = parts[3], parts[4], parts[5], parts[6]
        method = cseq.split()[-1] if cseq.split() else ""
        call = calls.get(call_id)
        if call is None:
            if direction != "S" or first.startswith("SIP/2.0"):
                continue  # not a call of ours
            call = calls[call_id] = CallSeen(call_id, epoch, epoch)
        call.ended = max(call.ended, epoch)
        if direction == "R" and first.startswith("SIP/2.0 "):
            try:
                status = int(first.split()[1])
            except (IndexError, ValueError):
                continue
            if status >= 200:
                call.finals.append((method, status))
            if method == "INVITE" and status == 200:
                call.answered = True
        elif direction == "R" and first.startswith("BYE "):
            call.bye = True
    return calls


class SippLoad:
    """One SIPp process placing ``logins`` on one edge at ``rate`` per second."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        edge_port: int,
        logins: Sequence[Login],
        rate: float,
        digits: str,
        *,
        bye_timeout_ms: int = 20000,
    ) -> None:
        self.name = name
        self.bye_timeout_ms = bye_timeout_ms
        self.workdir = workdir / name
        self.edge_port = edge_port
        self.logins = list(logins)
        self.rate = rate
        self.digits = digits
        self.proc: asyncio.subprocess.Process | None = None
        self.stopped_early = False

    @property
    def short_log(self) -> Path:
        return self.workdir / "short.log"

    async def start(self) -> None:
        """Start placing the calls (returns at once)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "login.xml").write_text(
            scenario_xml(self.digits, bye_timeout_ms=self.bye_timeout_ms)
        )
        (self.workdir / "ooc.xml").write_text(OUT_OF_CALL)
        (self.workdir / "logins.csv").write_text(injection_file(self.logins))
        calls = len(self.logins)
        limit = math.ceil(calls / self.rate + 60)
        cmd = [
            sipp_binary(),
            f"{HOST}:{self.edge_port}",
            "-sf",
            str(self.workdir / "login.xml"),
            "-oocsf",
            str(self.workdir / "ooc.xml"),
            "-inf",
            str(self.workdir / "logins.csv"),
            "-i",
            HOST,
            "-p",
            str(free_port()),
            "-mp",
            str(free_udp_block(4)),
            "-m",
            str(calls),
            "-r",
            f"{self.rate:g}",
            "-l",
            str(max(100, int(self.rate * 40))),
            "-timeout",
            f"{limit}s",
            "-timeout_error",
            "-trace_shortmsg",
            "-shortmessage_file",
            str(self.short_log),
            "-trace_err",
            "-error_file",
            str(self.workdir / "errors.log"),
            "-nostdin",
        ]
        out = (self.workdir / "sipp.out").open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.workdir,
            )
        finally:
            out.close()

    def stop_placing(self) -> None:
        """Place no more calls; the ones in progress run to their end (SIGUSR1)."""
        if self.proc is not None and self.proc.returncode is None:
            self.stopped_early = True
            self.proc.send_signal(signal.SIGUSR1)

    async def wait(self, timeout: float) -> int | None:
        """Wait for SIPp to exit (killed after ``timeout``); its exit code."""
        if self.proc is None:
            return None
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        return self.proc.returncode

    def check(self) -> None:
        """Raise :class:`SippFailed` if SIPp, left to run, did not place every call."""
        placed = len(self.calls())
        if self.stopped_early or placed >= len(self.logins):
            return
        try:
            tail = (self.workdir / "sipp.out").read_text(errors="replace")[-1500:]
        except OSError:
            tail = ""
        code = self.proc.returncode if self.proc is not None else None
        raise SippFailed(
            f"{self.name}: SIPp placed {placed} of {len(self.logins)} calls (exit {code}): {tail}"
        )

    def calls(self) -> dict[str, CallSeen]:
        """Every call placed so far, as SIPp saw it."""
        try:
            return parse_short_messages(self.short_log.read_text(errors="replace"))
        except OSError:
            return {}
