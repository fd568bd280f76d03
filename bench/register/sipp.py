"""SIPp as the REGISTER load generator: the digest-auth scenario, the users' injection
file, one bounded rate step, and the parsing of SIPp's statistics files.

The parsers are pure (text in, figures out) so they are tested on saved output.
"""

from __future__ import annotations

import csv
import io
import math
import resource
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# RFC 3261 section 10.2: REGISTER, challenged with 401 (section 22.2), sent again with
# credentials. SIPp answers the challenge itself from the [authentication] keyword; the
# keyword sits in the injection file because SIPp does not expand fields inside it.
# The response-time marker spans first REGISTER -> 200, the delay a phone sees.
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register-digest">
  <send retrans="500" start_rtd="1">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
Max-Forwards: 70
From: <sip:[field0]@[remote_ip]>;tag=[pid]r[call_number]
To: <sip:[field0]@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
Expires: 3600
User-Agent: hotdesk-bench
Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
Max-Forwards: 70
From: <sip:[field0]@[remote_ip]>;tag=[pid]r[call_number]
To: <sip:[field0]@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
Expires: 3600
[field1]
User-Agent: hotdesk-bench
Content-Length: 0

    ]]>
  </send>
  <recv response="200" rtd="1"/>
</scenario>
"""

RECV_TIMEOUT_MS = 5000
"""A registration still unanswered after this long counts as failed."""


GENERATOR_BUFFER_BYTES = 4 * 1024 * 1024


class SippError(RuntimeError):
    """SIPp could not run a step, or left no statistics behind."""


def binary() -> str:
    found = shutil.which("sipp")
    if not found:
        raise SippError("sipp not found: install the Debian package sip-tester")
    return found


def injection_file(users: Sequence[tuple[str, str]]) -> str:
    """SIPp's CSV: read in order (wrapping round), user name and its credentials."""
    for name, password in users:
        if any(c in name + password for c in ";[]= \n"):
            raise ValueError(f"user {name!r} or its password cannot go in a SIPp CSV")
    lines = ["SEQUENTIAL"]
    lines += [
        f"{name};[authentication username={name} password={password}]" for name, password in users
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SippCounts:
    """Cumulative counters from the last line of SIPp's ``-trace_stat`` file."""

    created: int
    successful: int
    failed: int
    retransmissions: int
    failed_timeout: int
    failed_unexpected: int


def parse_stat(text: str) -> SippCounts:
    """The cumulative counts of a ``-trace_stat`` CSV (``;``-separated, header first)."""
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]
    if len(rows) < 2:
        raise SippError("SIPp's statistics file holds no data line")
    last = dict(zip(rows[0], rows[-1], strict=False))

    def count(name: str) -> int:
        try:
            return int(last[name])
        except (KeyError, ValueError) as exc:
            raise SippError(f"SIPp's statistics have no usable {name!r}") from exc

    return SippCounts(
        created=count("TotalCallCreated"),
        successful=count("SuccessfulCall(C)"),
        failed=count("FailedCall(C)"),
        retransmissions=count("Retransmissions(C)"),
        failed_timeout=count("FailedTimeoutOnRecv(C)") + count("FailedMaxUDPRetrans(C)"),
        failed_unexpected=count("FailedUnexpectedMessage(C)"),
    )


@dataclass(frozen=True)
class Delays:
    """Registration delays (first REGISTER -> 200 OK) from ``-trace_rtt``.

    SIPp measures them in whole milliseconds, so 0 means "under a millisecond".
    """

    samples: list[int]
    """Every delay in ms, sorted."""
    last_completion_ms: float
    """When the last registration completed, in ms since SIPp started."""

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile (``q`` in (0, 1]); NaN without samples."""
        if not self.samples:
            return math.nan
        rank = max(1, math.ceil(q * len(self.samples)))
        return float(self.samples[rank - 1])


def parse_rtt(text: str) -> Delays:
    """A ``-trace_rtt`` CSV: ``Date_ms;response_time_ms;rtd_no`` lines."""
    samples: list[int] = []
    last = 0.0
    for line in text.splitlines():
        parts = line.split(";")
        if len(parts) < 3 or not parts[1].strip().isdigit():
            continue  # header, or a line cut short
        samples.append(int(parts[1]))
        last = max(last, float(parts[0]))
    samples.sort()
    return Delays(samples, last)


def rtt_dump_every(calls: int) -> int:
    """SIPp writes delays in batches of this many and drops the last partial batch at
    exit: every one for small runs; batches of 100 (at most 99 lost) for large ones,
    where one write per call would cost the generator time."""
    return 1 if calls < 1000 else 100


@dataclass(frozen=True)
class StepRun:
    """What SIPp saw in one step, and what it cost SIPp itself."""

    counts: SippCounts
    delays: Delays
    wall_seconds: float
    generator_cpu_seconds: float


def run_step(
    workdir: Path,
    host: str,
    port: int,
    rate: int,
    calls: int,
    users_csv: Path,
    *,
    max_seconds: float,
) -> StepRun:
    """``calls`` registrations at ``rate`` per second against ``host:port`` (UDP).

    SIPp stops by itself after the last call or ``max_seconds``; it is killed if it
    outlives that by 10 s.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "register.xml"
    scenario.write_text(SCENARIO)
    stat = workdir / "stat.csv"
    for old in workdir.glob("register_*_rtt.csv"):
        old.unlink()
    stat.unlink(missing_ok=True)
    cmd = [
        binary(),
        f"{host}:{port}",
        "-sf",
        str(scenario),
        "-inf",
        str(users_csv),
        "-i",
        host,
        "-p",
        "0",
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-l",
        str(max(1000, rate * 6)),
        "-recv_timeout",
        str(RECV_TIMEOUT_MS),
        "-timeout",
        f"{math.ceil(max_seconds)}s",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        str(rtt_dump_every(calls)),
        # SIPp's own socket must not be where packets drop (it reads replies between
        # sends on one thread); the kernel caps this at net.core.rmem_max.
        "-buff_size",
        str(GENERATOR_BUFFER_BYTES),
        "-nostdin",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with (workdir / "sipp.out").open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            proc.wait(max_seconds + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not stat.exists():
        tail = (workdir / "sipp.out").read_text(errors="replace")[-1500:]
        raise SippError(f"SIPp exited with {proc.returncode} and no statistics: {tail}")
    rtt_files = sorted(workdir.glob("register_*_rtt.csv"))
    rtt_text = rtt_files[-1].read_text() if rtt_files else ""
    return StepRun(
        counts=parse_stat(stat.read_text()),
        delays=parse_rtt(rtt_text),
        wall_seconds=wall,
        generator_cpu_seconds=(after.ru_utime + after.ru_stime)
        - (before.ru_utime + before.ru_stime),
    )
