"""Two ``hotdesk run ivr`` processes share the calls of one edge: SIPp desks log in
at once, each call is claimed by exactly one IVR, and both IVRs take some."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Config, Desk, Extension
from tests.e2e.heard import assert_heard, cut_short, played, talkspurts
from tests.e2e.ivr_processes import IvrProcess, ivr_processes
from tests.e2e.system import (
    DESK_PASSWORD,
    PINS,
    EventFacts,
    System,
    config,
    event_facts,
    pin_hash,
    running_system,
    sipp_desk_call,
)
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e

DESKS = [f"HD{n:04d}" for n in range(1, 9)]
ROUNDS = 2
"""Each round logs a fresh user in at every desk at once. The queue group hands each
call to a random member: a second round runs only if one IVR took all of the first's,
which happens once in 128 runs; both rounds going to one IVR, once in 32,768."""
USERS = [str(200 + n) for n in range(len(DESKS) * ROUNDS)]
PIN = PINS["100"]


def more_desks_and_users(cfg: Config) -> Config:
    """Desks HD0001-HD0008 and users 200-215, all of them with the PIN of user 100."""
    known = {d.name for d in cfg.desks}
    desks = list(cfg.desks) + [
        Desk(name=name, mac=f"0015650000{n:02x}", sip_password=DESK_PASSWORD)
        for n, name in enumerate(DESKS, start=1)
        if name not in known
    ]
    extensions = [
        Extension(number=user, name=f"User {user}", pin_hash=pin_hash(PIN)) for user in USERS
    ]
    return msgspec.structs.replace(cfg, desks=desks, extensions=extensions)


async def log_in(system: System, tmp: Path, desk: str, user: str) -> tuple[str, list[bytes]]:
    """``user`` logs in at ``desk`` from SIPp; the call's Call-ID and what it heard."""
    listener = await RtpPeer().start()
    try:
        run = await sipp_desk_call(
            system,
            tmp,
            desk=desk,
            dial=f"*77*{user}*",
            digits=PIN + "#",
            rtp_listener=listener.port,
            name=f"{desk}-{user}",
            digits_from_listener=True,
        )
        assert run.returncode == 0, run.stderr[-2000:] + run.messages[-3000:]
        return call_id_of(run.messages), talkspurts(listener)
    finally:
        listener.close()


def call_id_of(messages: str) -> str:
    """The Call-ID of SIPp's INVITE (its REGISTER has one of its own)."""
    invite = messages[messages.index("INVITE sip:") :]
    line = next(line for line in invite.splitlines() if line.startswith("Call-ID:"))
    return line.split(":", 1)[1].strip()


def claims(ivrs: list[IvrProcess]) -> list[dict[str, str]]:
    """Per IVR: Call-ID → its claim id, from the PIN check it logged for the call."""
    return [{r["call_id"]: r["claim_id"] for r in ivr.said("PIN checked")} for ivr in ivrs]


async def test_two_ivr_processes_each_claim_some_calls_and_no_call_twice(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    directory = more_desks_and_users(config(0, (0, 0)))
    async with (
        ivr_processes(nc, js, directory, tmp_path, count=2) as ivrs,
        running_system(nc, js, (36400, 36499), configure=more_desks_and_users, ivr=False) as system,
    ):
        placed: list[tuple[str, str, str]] = []  # (Call-ID, desk, user)
        for round_ in range(ROUNDS):
            users = USERS[round_ * len(DESKS) : (round_ + 1) * len(DESKS)]
            calls = await asyncio.gather(
                *(log_in(system, tmp_path, d, u) for d, u in zip(DESKS, users, strict=True))
            )
            for (call_id, heard), desk, user in zip(calls, DESKS, users, strict=True):
                assert_heard(heard, [cut_short("en/enter-pin"), played("en/logged-in")])
                placed.append((call_id, desk, user))
            if all(claims(ivrs)):
                break
        ledger = await system.whole_ledger()
        by_ivr = claims(ivrs)
    assert all(by_ivr), f"one IVR claimed every call: {[len(c) for c in by_ivr]}"
    # Each call was claimed by exactly one IVR …
    for call_id, _, _ in placed:
        assert sum(call_id in c for c in by_ivr) == 1, call_id
    assert sorted(k for c in by_ivr for k in c) == sorted(c for c, _, _ in placed)
    # … and wrote its login: the event's id names the claim of the IVR that took it.
    claim_of = {call_id: claim for c in by_ivr for call_id, claim in c.items()}
    facts: dict[str, list[EventFacts]] = {}
    claimed_by: dict[str, list[str]] = {}
    for call_id, desk, user in placed:
        subject = subjects.desk_ledger(desk)
        seated = facts.setdefault(subject, [])
        if seated:
            left = seated[-1][1]["user"]
            seated.append(("Roamed", {"desk": desk, "from_user": left, "user": user}))
        else:
            seated.append(("LoggedIn", {"desk": desk, "user": user}))
        claimed_by.setdefault(subject, []).append(claim_of[call_id])
    assert event_facts(ledger) == facts
    assert {s: [e.event_id.split(":")[1] for e in events] for s, events in ledger.items()} == (
        claimed_by
    )
