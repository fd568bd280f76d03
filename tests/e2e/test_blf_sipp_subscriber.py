"""BLF end to end with SIPp as the subscriber (issue 6): a SIPp BLF key subscribes to
user 100 (``Event: dialog``, digest as 101), 100 logs in at HD0001 with a real desk
call, 101 calls 100 through the edge, HD0001's phone answers, 101 hangs up; 100 then
logs in at HD0002 (moving from HD0001) and is called again. The SIPp scenario checks
each NOTIFY's lamp state in order (terminated, early, confirmed, terminated, early,
confirmed, terminated), then unsubscribes and takes the final NOTIFY; the test checks
SIPp's outcome and, from its message log, that the versions increase strictly and that
each call the lamp shows is the one the desk's phone answered."""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.events import LoggedIn, LoggedOut
from hotdesk_sip_edge.blf import dialog_info
from hotdesk_sip_edge.blf.dialog_info import DialogInfo
from tests.e2e.blf_watcher import lamp
from tests.e2e.sipp import Sipp, start_sipp
from tests.e2e.system import PINS, PRESENCE, SCENARIOS, running_system, sipp_desk_call
from tests.e2e.test_blf_follows_user import (
    CALL_CYCLE,
    PHONE_101_PASSWORD,
    call_100_from_101,
    desk_phone,
    phone_for_101,
)
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Notify:
    """A NOTIFY SIPp's message log shows it received (retransmissions left out)."""

    cseq: int
    subscription_state: str
    document: DialogInfo | None


def _header(lines: list[str], name: str) -> str:
    prefix = name.lower() + ":"
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.lower().startswith(prefix)), ""
    )


def received_notifies(messages: str) -> list[Notify]:
    """Every NOTIFY in a SIPp message log (``-trace_msg``), once per CSeq, in order."""
    out: list[Notify] = []
    for block in re.split(r"^-{20,}.*$", messages, flags=re.M):
        text = block.strip()
        if not text.startswith(("UDP message received", "TCP message received")):
            continue
        message = text.split("\n", 1)[1].lstrip("\r\n")
        if not message.startswith("NOTIFY "):
            continue
        head, _, body = message.replace("\r\n", "\n").partition("\n\n")
        lines = head.splitlines()
        cseq = int(_header(lines, "CSeq").split()[0])
        if any(n.cseq == cseq for n in out):
            continue
        document = dialog_info.parse(body.strip().encode()) if body.strip() else None
        out.append(Notify(cseq, _header(lines, "Subscription-State"), document))
    return out


def ringing_to_tag(messages: str) -> str:
    """The To-tag of the 180 a desk phone's SIPp sent."""
    ringing = messages[messages.index("SIP/2.0 180 Ringing") :]
    line = next(line for line in ringing.splitlines() if line.startswith("To:"))
    return line.split(";tag=", 1)[1].split(";")[0].strip()


def invite_call_id(messages: str) -> str:
    """The Call-ID of the INVITE a desk phone's SIPp took."""
    invite = messages[messages.index("INVITE sip:") :]
    line = next(line for line in invite.splitlines() if line.startswith("Call-ID:"))
    return line.split(":", 1)[1].strip()


async def answered_notify(subscriber: Sipp) -> None:
    """Wait until the subscriber has answered the initial NOTIFY."""
    for _ in range(400):
        if subscriber.proc.returncode is not None:
            break
        log = subscriber.log.read_text(errors="replace") if subscriber.log.exists() else ""
        if re.search(r"message sent.*\n+SIP/2\.0 200 OK(?:.*\n)*?CSeq: *\d+ NOTIFY", log):
            return
        await asyncio.sleep(0.05)
    run = await subscriber.finish(1)
    raise AssertionError("no initial NOTIFY answered: " + run.stderr[-2000:] + run.messages)


async def test_sipp_blf_key_sees_calls_to_a_user_in_order_and_follows_the_user_to_a_new_desk(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with running_system(
            nc, js, (36400, 36499), extra=[PRESENCE], configure=phone_for_101
        ) as system:
            subscriber = await start_sipp(
                tmp_path,
                SCENARIOS / "blf_lamp_follows_user.xml",
                "-s",
                "100",
                "-au",
                "101",
                "-ap",
                PHONE_101_PASSWORD,
                "-key",
                "subscriber",
                "101",
                name="blf-key",
                remote=f"127.0.0.1:{system.sip_port}",
                timeout_s=60,
            )
            try:
                await answered_notify(subscriber)

                first_desk = await desk_phone(tmp_path, "hd0001-phone")
                login = await sipp_desk_call(
                    system,
                    tmp_path,
                    desk="HD0001",
                    dial="*77*100*",
                    digits=PINS["100"] + "#",
                    rtp_listener=listener.port,
                    name="login-hd0001",
                    contact_port=first_desk.port,
                )
                assert login.returncode == 0, login.stderr[-2000:] + login.messages[-3000:]
                await call_100_from_101(system, tmp_path, "call-1", listener.port)
                first = await first_desk.finish(10)
                assert first.returncode == 0, first.stderr[-2000:] + first.messages[-3000:]

                # 100 sits down at HD0002 and, told they are logged in at HD0001, presses
                # 1 to move: HD0001 logs out, HD0002 logs in.
                second_desk = await desk_phone(tmp_path, "hd0002-phone")
                move = await sipp_desk_call(
                    system,
                    tmp_path,
                    desk="HD0002",
                    dial="*77*100*",
                    digits=PINS["100"] + "#|1",
                    rtp_listener=listener.port,
                    name="login-hd0002",
                    contact_port=second_desk.port,
                )
                assert move.returncode == 0, move.stderr[-2000:] + move.messages[-3000:]
                assert isinstance((await system.desk_ledger("HD0002"))[-1], LoggedIn)
                assert isinstance((await system.desk_ledger("HD0001"))[-1], LoggedOut)
                await call_100_from_101(system, tmp_path, "call-2", listener.port)
                second = await second_desk.finish(10)
                assert second.returncode == 0, second.stderr[-2000:] + second.messages[-3000:]

                watched = await subscriber.finish(30)
            finally:
                await subscriber.kill()
    finally:
        listener.close()

    assert watched.returncode == 0, watched.stderr[-2000:] + watched.messages[-6000:]
    notifies = received_notifies(watched.messages)
    documents = [n.document for n in notifies if n.document is not None]
    # Each NOTIFY carries a document, the final one too.
    assert len(documents) == len(notifies), notifies
    assert notifies[0].subscription_state.startswith("active;expires=")
    assert notifies[-1].subscription_state.startswith("terminated"), notifies[-1]
    assert all(n.subscription_state.startswith("active") for n in notifies[:-1]), notifies
    versions = [d.version for d in documents]
    assert versions == sorted(set(versions)), versions
    assert {d.entity.split("@")[0] for d in documents} == {"sip:100"}
    assert lamp(documents, "100") == CALL_CYCLE + CALL_CYCLE[1:]
    # A NOTIFY reports a change: none repeats the dialogs of the one before (the final
    # NOTIFY, which ends the subscription, may).
    pairs = itertools.pairwise(documents[:-1])
    repeats = [d.version for p, d in pairs if p.dialogs == d.dialogs]
    assert repeats == [], repeats

    # After the initial state, each cycle is the call the desk 100 sat at answered,
    # seen from 100's side: first HD0001's phone, after the move HD0002's.
    live = [d for doc in documents for d in doc.dialogs if d.state != "terminated"]
    assert {d.direction for d in live} == {"recipient"}
    answered = [invite_call_id(first.messages), invite_call_id(second.messages)]
    by_call = [[doc for doc in documents[1:] if doc.dialogs[0].call_id == c] for c in answered]
    assert sum(len(docs) for docs in by_call) == len(documents) - 1, documents
    assert [lamp(docs, "100") for docs in by_call] == [CALL_CYCLE[1:], CALL_CYCLE[1:]]
    # RFC 4235 section 4.1.1: one dialog, one id. The desk's 180 gave 100's side of
    # each call its local tag, so the early and the confirmed dialog have the same id
    # and tags, the desk's To-tag as the local tag (Yealink and Poly pick up with them).
    for desk, docs in zip((first, second), by_call, strict=True):
        shown = [(doc.version, doc.dialogs[0]) for doc in docs]
        live_dialogs = [d for _, d in shown if d.state in ("early", "confirmed")]
        assert {d.state for d in live_dialogs} == {"early", "confirmed"}, shown
        ids = {(d.id, d.call_id, d.local_tag, d.remote_tag) for d in live_dialogs}
        assert len(ids) == 1, shown
        assert live_dialogs[0].local_tag == ringing_to_tag(desk.messages), shown
        assert live_dialogs[0].remote_tag, shown
