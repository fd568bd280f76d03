"""The IVR flows a SIPp desk drives through the real edge and IVR, each checked twice:
the ledger holds exactly the events the flow should write, and the RTP the desk
received is, talkspurt by talkspurt, the prompt files the flow should play."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LogoutReason
from hotdesk_ivr import prompts
from tests.e2e.heard import FILE_NOT_FOUND, assert_heard, cut_short, played, talkspurts
from tests.e2e.system import PINS, System, event_facts, running_system, sipp_desk_call
from tests.sip_edge.harness import seed_login
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e

USER = "100"
DESK = subjects.desk_ledger("HD0001")
PIN_CHECKED = "PIN checked"
WRONG = "9#"
"""A wrong PIN, short: each digit takes SIPp 0.4 s to replay."""


async def call_and_listen(
    system: System,
    tmp: Path,
    name: str,
    *,
    desk: str = "HD0001",
    dial: str = f"*77*{USER}*",
    digits: str = "",
    info: bool = False,
) -> list[bytes]:
    """One SIPp call, its RTP received on the port its SDP offers and the port its
    RFC 2833 digits leave from; the talkspurts it heard."""
    listener = await RtpPeer().start()
    try:
        run = await sipp_desk_call(
            system,
            tmp,
            desk=desk,
            dial=dial,
            digits=digits,
            rtp_listener=listener.port,
            name=name,
            info=info,
            digits_from_listener=True,
        )
        assert run.returncode == 0, run.stderr[-2000:] + run.messages[-3000:]
        return talkspurts(listener)
    finally:
        listener.close()


def rejected(failures: int) -> tuple[str, dict[str, object]]:
    return ("PinRejected", {"user": USER, "desk": "HD0001", "failures": failures})


async def test_pin_failures_over_two_calls_lock_the_user_out_and_a_third_call_hears_it(
    nc: Client, js: JetStreamContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hotdesk_ivr.main")
    user = subjects.user_ledger(USER)
    async with running_system(nc, js, (35500, 35599)) as system:
        # Three tries per call, five failures lock: the first call uses up its tries…
        first = await call_and_listen(system, tmp_path, "first", digits=f"{WRONG}|{WRONG}|{WRONG}")
        assert_heard(
            first,
            [
                cut_short("en/enter-pin"),
                cut_short("en/pin-wrong", "en/enter-pin"),
                cut_short("en/pin-wrong", "en/enter-pin"),
                played("en/pin-wrong", "en/goodbye"),
            ],
        )
        assert event_facts(await system.whole_ledger()) == {user: [rejected(n) for n in (1, 2, 3)]}
        # … the second call's second wrong PIN is the fifth …
        second = await call_and_listen(system, tmp_path, "second", digits=f"{WRONG}|{WRONG}")
        assert_heard(
            second,
            [
                cut_short("en/enter-pin"),
                cut_short("en/pin-wrong", "en/enter-pin"),
                played("en/pin-wrong", "en/locked-out"),
            ],
        )
        locked = [
            *(rejected(n) for n in range(1, 6)),
            ("PinLockedOut", {"user": USER, "desk": "HD0001"}),
        ]
        assert event_facts(await system.whole_ledger()) == {user: locked}
        # … and the right PIN in a third call is not even checked.
        third = await call_and_listen(system, tmp_path, "third", digits=PINS[USER] + "#")
        assert_heard(third, [cut_short("en/enter-pin"), played("en/locked-out")])
        assert event_facts(await system.whole_ledger()) == {user: locked}
    assert [r.message for r in caplog.records].count(PIN_CHECKED) == 5


async def test_the_logout_code_at_an_idle_desk_says_so_and_writes_nothing(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    async with running_system(nc, js, (35600, 35699)) as system:
        heard = await call_and_listen(system, tmp_path, "logout", dial="*77*5*")
        ledger = await system.whole_ledger()
    assert_heard(heard, [played("en/desk-not-in-use")])
    assert ledger == {}


async def test_a_prompt_missing_from_the_store_plays_file_not_found_and_names_it_in_the_log(
    nc: Client, js: JetStreamContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_system(nc, js, (35900, 35999)) as system:
        await (await prompts.open_store(js)).delete("en/logged-in")
        missing = [(r.set, r.prompt) for r in await prompts.status(js) if r.state != prompts.OK]
        assert missing == [("en", "logged-in")]
        heard = await call_and_listen(system, tmp_path, "login", digits=PINS[USER] + "#")
        ledger = event_facts(await system.whole_ledger())
    assert_heard(heard, [cut_short("en/enter-pin"), played(FILE_NOT_FOUND)])
    assert ledger == {DESK: [("LoggedIn", {"desk": "HD0001", "user": USER})]}
    # The edge names the prompt it could not find, and the call it played in.
    edge = [r for r in caplog.records if r.message == "prompt not found"]
    assert [(r.levelno, getattr(r, "prompt_id", None)) for r in edge] == [
        (logging.ERROR, "en/logged-in")
    ]
    assert getattr(edge[0], "call_id", "").endswith("@127.0.0.1")


async def test_a_user_seated_elsewhere_is_asked_and_moves_with_sip_info_digits(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    async with running_system(nc, js, (36000, 36099)) as system:
        await seed_login(js, "HD0001", USER)
        # The PIN, then "1" while the question plays: SIP INFO, so no RTP from SIPp.
        heard = await call_and_listen(
            system, tmp_path, "move", desk="HD0002", digits=PINS[USER] + "#|||1", info=True
        )
        ledger = event_facts(await system.whole_ledger())
    assert_heard(
        heard,
        [
            cut_short("en/enter-pin"),
            cut_short(
                "en/logged-in-elsewhere",
                *(f"en/{p}" for p in ("letter-h", "letter-d", "digit-0", "digit-0")),
                *(f"en/{p}" for p in ("digit-0", "digit-1", "press-1-to-move")),
            ),
            played("en/logged-in"),
        ],
    )
    assert ledger == {
        DESK: [
            ("LoggedIn", {"desk": "HD0001", "user": USER}),
            ("LoggedOut", {"desk": "HD0001", "user": USER, "reason": LogoutReason.ELSEWHERE}),
        ],
        subjects.desk_ledger("HD0002"): [("LoggedIn", {"desk": "HD0002", "user": USER})],
    }
