"""Reprovisioning through the whole system: a SIPp desk logs in with its PIN, takes the
check-sync NOTIFY at its registered contact, fetches its new config over digest-authed
HTTP, re-registers, and the provisioner confirms; a desk that never fetches fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Config
from hotdesk_contracts.events import LoggedIn, LoggedOut
from hotdesk_contracts.messages import ProvisioningEvent, ReprovisionConfirmed, ReprovisionFailed
from tests.e2e.sipp import Sipp, sipp_register, start_sipp
from tests.e2e.system import (
    DESK_PASSWORD,
    PINS,
    PROVISIONER,
    SCENARIOS,
    System,
    running_system,
    sipp_desk_call,
)
from tests.sip_edge.harness import seed_login
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e

YEALINK_UA = "Yealink SIP-T46S 66.86.0.15 00:15:65:00:00:01"
MAC_CFG = "/001565000001.cfg"


def yealink_desks(**provisioning: float | int) -> Callable[[Config], Config]:
    """Every desk is a Yealink whose model is not configured: the provisioner learns it
    (T46S) from the phone's first fetch, which then also gets the model-common file, and
    that fetch of the newest files still confirms the reprovision. User 100 has a BLF key
    for 101; reprovision timings as given."""

    def configure(cfg: Config) -> Config:
        desks = [msgspec.structs.replace(d, vendor="yealink", model="") for d in cfg.desks]
        extensions = [
            msgspec.structs.replace(e, blf=["101"]) if e.number == "100" else e
            for e in cfg.extensions
        ]
        settings = msgspec.structs.replace(cfg.provisioning, **provisioning)
        return msgspec.structs.replace(
            cfg, desks=desks, extensions=extensions, provisioning=settings
        )

    return configure


def settings_of(text: str) -> dict[str, str]:
    """A Yealink ``key = value`` file as a dict (comments left out; a key set twice
    keeps its last value, as the phone applies it)."""
    pairs = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


async def fetch_config(system: System) -> dict[str, str]:
    """Fetch HD0001's ``<mac>.cfg`` as its Yealink would: digest auth, Yealink agent."""
    async with httpx.AsyncClient(base_url=system.provisioning_url, timeout=10) as http:
        response = await http.get(
            MAC_CFG,
            headers={"User-Agent": YEALINK_UA},
            auth=httpx.DigestAuth("HD0001", DESK_PASSWORD),
        )
    assert response.status_code == 200, response.text
    return settings_of(response.text)


async def check_sync_uas(tmp: Path, name: str, *, notifies: int = 1) -> Sipp:
    """The desk phone's SIP port: answers ``notifies`` check-sync NOTIFYs with 200."""
    return await start_sipp(
        tmp, SCENARIOS / "checksync_uas.xml", name=name, calls=notifies, timeout_s=30
    )


async def test_login_reprovisions_the_yealink_desk_and_logout_gives_the_idle_config_back(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    configure = yealink_desks(retries=2, retry_backoff_seconds=0.5, stage_timeout_seconds=15)
    try:
        async with running_system(
            nc, js, (36100, 36199), extra=[PROVISIONER], configure=configure
        ) as system:
            outcomes = await js.subscribe(subjects.provisioning_event("HD0001"))
            for step, dial, digits, event in [
                ("login", "*77*100*", PINS["100"] + "#", LoggedIn),
                ("logout", "*77*5*", "", LoggedOut),
            ]:
                phone = await check_sync_uas(tmp_path, f"{step}-uas")
                call = await sipp_desk_call(
                    system,
                    tmp_path,
                    desk="HD0001",
                    dial=dial,
                    digits=digits,
                    rtp_listener=listener.port,
                    name=step,
                    contact_port=phone.port,
                )
                assert call.returncode == 0, call.stderr[-2000:] + call.messages[-3000:]
                assert isinstance((await system.desk_ledger("HD0001"))[-1], event)
                notified = await phone.finish(20)
                assert notified.returncode == 0, notified.stderr[-2000:] + notified.messages
                assert "Event: check-sync;reboot=false" in notified.messages

                config = await fetch_config(system)
                if step == "login":
                    assert config["account.1.label"] == "100 Ann Example"
                    assert config["account.1.display_name"] == "100 Ann Example"
                    assert (config["linekey.1.type"], config["linekey.1.value"]) == (
                        "13",
                        "*77*5*",
                    )
                    assert (config["linekey.2.type"], config["linekey.2.value"]) == ("16", "101")
                else:
                    # The idle desk shows its own name and no user's BLF keys.
                    assert config["account.1.label"] == "HD0001"
                    assert config["linekey.2.type"] == "0"
                # The desk keeps its own SIP identity either way.
                assert config["account.1.user_name"] == "HD0001"

                registered = await sipp_register(
                    system, tmp_path, desk="HD0001", contact_port=phone.port, name=f"{step}-reg"
                )
                assert registered.returncode == 0, registered.stderr[-2000:]
                msg = await outcomes.next_msg(timeout=15)
                outcome = msgspec.json.decode(msg.data, type=ProvisioningEvent)
                assert isinstance(outcome, ReprovisionConfirmed), outcome
                assert (outcome.desk, outcome.attempts) == ("HD0001", 1)
            await outcomes.unsubscribe()
    finally:
        listener.close()


async def test_desk_that_never_fetches_ends_in_reprovision_failed_after_the_retries(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    configure = yealink_desks(retries=1, retry_backoff_seconds=0.2, stage_timeout_seconds=1.0)
    async with running_system(
        nc, js, (36200, 36299), extra=[PROVISIONER], configure=configure
    ) as system:
        outcomes = await js.subscribe(subjects.provisioning_event("HD0001"))
        # One NOTIFY per attempt: the first and the single retry; the phone answers
        # both but never fetches.
        phone = await check_sync_uas(tmp_path, "lazy-uas", notifies=2)
        registered = await sipp_register(system, tmp_path, desk="HD0001", contact_port=phone.port)
        assert registered.returncode == 0, registered.stderr[-2000:]
        await seed_login(js, "HD0001", "100")
        notified = await phone.finish(20)
        assert notified.returncode == 0, notified.stderr[-2000:] + notified.messages
        msg = await outcomes.next_msg(timeout=15)
        await outcomes.unsubscribe()
    outcome = msgspec.json.decode(msg.data, type=ProvisioningEvent)
    assert isinstance(outcome, ReprovisionFailed), outcome
    assert (outcome.desk, outcome.attempts, outcome.stage) == ("HD0001", 2, "fetch")
