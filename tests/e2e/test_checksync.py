"""The provisioner's check-sync request reaches a desk phone through the real edge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.commands import SendCheckSync
from hotdesk_contracts.messages import CheckSyncResult
from tests.e2e.system import DESK_PASSWORD, SCENARIOS, free_udp_port, running_system
from tests.sip_edge.harness import Phone

pytestmark = pytest.mark.e2e


async def ask_check_sync(nc: Client, desk: str) -> CheckSyncResult:
    command = SendCheckSync(desk=desk, event="check-sync;reboot=false", reprovision_id="r-1")
    reply = await nc.request(subjects.EDGE_COMMAND_ANY, msgspec.json.encode(command), timeout=40)
    return msgspec.json.decode(reply.data, type=CheckSyncResult)


async def test_registered_desk_gets_the_check_sync_notify_and_its_200_is_reported(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    async with running_system(nc, js, (35500, 35599)) as system:
        uas_port = free_udp_port()
        uas = await asyncio.create_subprocess_exec(
            "sipp",
            "-sf",
            str(SCENARIOS / "checksync_uas.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            str(uas_port),
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
        )
        phone = Phone(system.sip_port)
        try:
            registered = await phone.register(
                "HD0001", DESK_PASSWORD, contact=f"<sip:HD0001@127.0.0.1:{uas_port}>"
            )
            assert registered.status == 200
            # Should SIPp still be starting, the NOTIFY's retransmission (Timer E) finds it.
            result = await ask_check_sync(nc, "HD0001")
            _, err = await asyncio.wait_for(uas.communicate(), 30)
        finally:
            phone.close()
            if uas.returncode is None:
                uas.kill()
                await uas.wait()
    assert uas.returncode == 0, err.decode()[-2000:]
    assert (result.desk, result.reprovision_id) == ("HD0001", "r-1")
    assert (result.status, result.contacts) == (200, 1)


async def test_desk_without_a_binding_is_reported_with_no_contacts(
    nc: Client, js: JetStreamContext
) -> None:
    async with running_system(nc, js, (35600, 35699)):
        result = await ask_check_sync(nc, "HD0002")
    assert (result.desk, result.status, result.contacts) == ("HD0002", 0, 0)
