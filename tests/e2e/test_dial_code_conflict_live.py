"""A dial-code conflict that slipped past check-config (a live change of the directory
in the KV bucket) is refused at run time: a call dialling the ambiguous string gets
403 Forbidden and the edge logs a line naming the conflicting codes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.dialplan import dial_code_problems
from hotdesk_contracts.directory import Desk, DialCodes, Directory, Extension, OtherCode
from hotdesk_runtime.directory import publish_directory
from hotdesk_runtime.nats import ensure_jetstream
from tests.e2e.edge_process import EdgeProcess, edge_process
from tests.sip_edge.harness import SippResult, run_sipp

PASSWORD = "desk-secret-conflict"
DIRECTORY = Directory(
    extensions=[Extension(number="100", name="Ann Example")],
    desks=[Desk(name="HD0001", mac="001565000001", sip_password=PASSWORD)],
)
CONFLICTING = msgspec.structs.replace(
    DIRECTORY,
    dial_codes=DialCodes(
        other=[OtherCode(code="*8", name="pickup"), OtherCode(code="*81", name="intercom")]
    ),
)
DIALLED = "*812"
"""Starts with both ``*8`` and ``*81``."""


def final_response(result: SippResult) -> str:
    """The start line of the last response SIPp received."""
    lines = re.findall(r"^SIP/2\.0 \d{3} .*$", result.messages, flags=re.M)
    assert lines, result.messages
    return lines[-1].strip()


async def call(edge: EdgeProcess, tmp: Path) -> SippResult:
    result = await run_sipp(
        "uac_forbidden.xml",
        edge.port,
        tmp=tmp,
        user="HD0001",
        password=PASSWORD,
        service=DIALLED,
        keys={"caller": "HD0001"},
    )
    assert result.returncode == 0, result.stderr + result.messages
    return result


async def installed(edge: EdgeProcess, count: int) -> None:
    for _ in range(600):
        if len(edge.said("directory installed")) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the edge never installed the directory: {edge.records()[-5:]}")


async def test_a_conflict_published_live_gets_403_and_a_log_line_naming_the_codes(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    await ensure_jetstream(js)
    # check-config would have refused this table.
    assert [key for key, _ in dial_code_problems(CONFLICTING)] == ["dial_codes.other[1].code"]
    async with edge_process(nc, DIRECTORY, tmp_path, (36700, 36799)) as edge:
        # Before the change the string is an outside number, which an idle desk may not
        # call: refused by the idle-desk policy, not by a conflict.
        before = await call(edge, tmp_path)
        assert (
            final_response(before)
            == "SIP/2.0 403 Desk not logged in - only emergency calls allowed"
        )
        assert not edge.said("call refused: dial code conflict")

        await publish_directory(js, CONFLICTING)  # straight into the bucket
        await installed(edge, 1)
        after = await call(edge, tmp_path)
        assert final_response(after) == "SIP/2.0 403 Forbidden"
    refused = edge.said("call refused: dial code conflict")
    assert [r["message"] for r in refused] == ["call refused: dial code conflict: *8, *81"]
    assert refused[0]["level"] == "warning"
