"""The IVR call flows as pure state machines: every branch of login and logout."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from hotdesk_contracts.commands import LogIn, LogOut, RecordPinFailure
from hotdesk_contracts.directory import Desk, Directory, Extension, Policies
from hotdesk_contracts.events import (
    Cause,
    LoggedIn,
    LoggedOut,
    LogoutReason,
    PinLockedOut,
    PinRejected,
    Roamed,
)
from hotdesk_contracts.messages import FeatureDialled
from hotdesk_ivr.flows import (
    Action,
    CallFlow,
    CallGone,
    CancelDigitTimer,
    CommandDone,
    CommandFailed,
    Digit,
    DigitTimeout,
    Execute,
    Facts,
    HangUp,
    Lookup,
    PinChecked,
    Play,
    PromptsDone,
    StartDigitTimer,
    VerifyPin,
    spell_desk,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CAUSE = Cause(actor="user:100")
DIRECTORY = Directory(
    extensions=[
        Extension(number="100", name="Ann", pin_hash="$argon2-ann"),
        Extension(number="101", name="Bo", pin_hash="$argon2-bo", language="de"),
        Extension(number="102", name="Cy"),
    ],
    desks=[
        Desk(name="HD0001", mac="001565000001", sip_password="x"),
        Desk(name="HD0002", mac="001565000002", sip_password="y"),
    ],
    policies=Policies(pin_tries_per_call=3, pin_digit_timeout_seconds=8.0),
)


def dial(
    feature: str = "login", argument: str = "100", *, caller: str = "HD0001", via_key: bool = False
) -> FeatureDialled:
    return FeatureDialled(
        at=NOW,
        origin="edge-1",
        call_id="call-1",
        caller=caller,
        dialled=f"*77*{argument}*",
        feature=feature,
        argument=argument,
        via_key=via_key,
    )


def plays(actions: list[Action]) -> list[list[str]]:
    return [a.prompts for a in actions if isinstance(a, Play)]


def only(actions: list[Action], kind: type) -> object:
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, actions
    return found[0]


def ends_call(actions: list[Action]) -> bool:
    return isinstance(actions[-1], HangUp)


_FACTS: dict[int, Facts] = {}
"""What the ledger answers each flow's lookups with (by ``id(flow)``)."""


SILENT_ABOUT_EXTENSIONS = msgspec.structs.replace(
    DIRECTORY,
    policies=msgspec.structs.replace(DIRECTORY.policies, announce_unknown_extension=False),
)
"""The directory with ``announce_unknown_extension`` off."""


def login_at_pin(
    facts: Facts | None = None, *, argument: str = "100", directory: Directory = DIRECTORY
) -> CallFlow:
    flow = CallFlow(dial(argument=argument), directory)
    assert plays(flow.start(NOW)) == [["en/enter-pin"]]
    _FACTS[id(flow)] = facts or Facts(desk_user=None)
    return flow


def answer_lookup(flow: CallFlow, actions: list[Action]) -> list[Action]:
    """Answer a ``Lookup`` among ``actions`` with the flow's facts."""
    lookups = [a for a in actions if isinstance(a, Lookup)]
    if not lookups:
        return actions
    return flow.handle(_FACTS.get(id(flow), Facts(desk_user=None)), NOW)


def type_pin(flow: CallFlow, pin: str) -> list[Action]:
    actions: list[Action] = []
    for d in pin:
        actions = flow.handle(Digit(d), NOW)
    return answer_lookup(flow, actions)


def rejected(failures: int = 1, user: str = "100") -> PinRejected:
    return PinRejected(
        event_id="e",
        at=NOW,
        cause=CAUSE,
        correlation_id="c",
        user=user,
        desk="HD0001",
        failures=failures,
    )


def logged_out(user: str = "101") -> LoggedOut:
    return LoggedOut(
        event_id="e",
        at=NOW,
        cause=CAUSE,
        correlation_id="c",
        desk="HD0001",
        user=user,
        reason=LogoutReason.USER_CODE,
    )


def logged_in(user: str = "100") -> LoggedIn:
    return LoggedIn(event_id="e", at=NOW, cause=CAUSE, correlation_id="c", desk="HD0001", user=user)


# --- login ------------------------------------------------------------------------------
@pytest.mark.parametrize("argument", ["999", "102"], ids=["unknown", "without-pin"])
def test_an_extension_that_cannot_log_in_hears_so_and_the_call_ends(argument: str) -> None:
    flow = CallFlow(dial(argument=argument), DIRECTORY)
    actions = flow.start(NOW)
    assert plays(actions) == [["en/unknown-extension"]]
    assert ends_call(actions)
    assert flow.finished
    assert not any(isinstance(a, Lookup | VerifyPin | Execute) for a in actions)


@pytest.mark.parametrize("argument", ["999", "102"], ids=["unknown", "without-pin"])
def test_without_announcing_an_extension_that_cannot_log_in_is_asked_for_a_pin_like_any_other(
    argument: str,
) -> None:
    flow = login_at_pin(argument=argument, directory=SILENT_ABOUT_EXTENSIONS)
    actions = flow.handle(Digit("1"), NOW)
    actions = flow.handle(Digit("#"), NOW)
    assert only(actions, Lookup) == Lookup(desk="HD0001", user=None)
    verify = only(answer_lookup(flow, actions), VerifyPin)
    assert verify == VerifyPin(pin="1", pin_hash="")  # the adapter uses a dummy hash
    actions = flow.handle(PinChecked(ok=False), NOW)
    assert plays(actions) == [["en/pin-wrong", "en/enter-pin"]]
    assert not any(isinstance(a, Execute) for a in actions)  # nobody to record it against


def test_without_announcing_an_unknown_extension_hears_goodbye_after_the_tries() -> None:
    flow = login_at_pin(argument="999", directory=SILENT_ABOUT_EXTENSIONS)
    for _ in range(3):
        type_pin(flow, "1#")
        actions = flow.handle(PinChecked(ok=False), NOW)
    assert plays(actions) == [["en/pin-wrong", "en/goodbye"]]
    assert ends_call(actions)


def test_a_caller_that_is_not_a_desk_hears_the_error_prompt() -> None:
    actions = CallFlow(dial(caller="HD0099"), DIRECTORY).start(NOW)
    assert plays(actions) == [["en/error"]]
    assert ends_call(actions)


def test_a_locked_out_user_types_a_pin_then_hears_the_lockout_without_a_check() -> None:
    flow = login_at_pin(Facts(desk_user=None, locked_out=True))
    actions = type_pin(flow, "1234#")
    assert not any(isinstance(a, VerifyPin) for a in actions)
    assert plays(actions) == [["en/locked-out"]]
    assert ends_call(actions)
    assert flow.finished


def test_the_right_pin_logs_the_user_in_on_an_idle_desk() -> None:
    flow = login_at_pin()
    actions = type_pin(flow, "1234#")
    verify = only(actions, VerifyPin)
    assert verify == VerifyPin(pin="1234", pin_hash="$argon2-ann")
    assert "1234" not in repr(verify)
    execute = only(flow.handle(PinChecked(ok=True), NOW), Execute)
    assert isinstance(execute, Execute)
    command = execute.command
    assert isinstance(command, LogIn)
    assert (command.desk, command.user, command.seen_user, command.move) == (
        "HD0001",
        "100",
        None,
        False,
    )
    assert command.cause.call_id == "call-1"
    actions = flow.handle(CommandDone([logged_in()]), NOW)
    assert plays(actions) == [["en/logged-in"]]
    assert ends_call(actions)


def test_logging_in_on_an_occupied_desk_roams_it_with_the_user_the_flow_saw() -> None:
    flow = login_at_pin(Facts(desk_user="101"))
    type_pin(flow, "1234#")
    execute = only(flow.handle(PinChecked(ok=True), NOW), Execute)
    assert isinstance(execute, Execute)
    assert isinstance(execute.command, LogIn)
    assert execute.command.seen_user == "101"
    roamed = Roamed(
        event_id="e",
        at=NOW,
        cause=CAUSE,
        correlation_id="c",
        desk="HD0001",
        from_user="101",
        user="100",
    )
    assert plays(flow.handle(CommandDone([roamed]), NOW)) == [["en/logged-in"]]


def test_the_users_language_is_spoken_only_after_the_right_pin() -> None:
    flow = login_at_pin(argument="101")
    type_pin(flow, "9#")
    flow.handle(PinChecked(ok=False), NOW)
    actions = flow.handle(CommandDone([rejected(user="101")]), NOW)
    assert plays(actions) == [["en/pin-wrong", "en/enter-pin"]]  # could betray the extension
    type_pin(flow, "1234#")
    flow.handle(PinChecked(ok=True), NOW)
    actions = flow.handle(CommandDone([logged_in("101")]), NOW)
    assert plays(actions) == [["de/logged-in"]]


def test_a_wrong_pin_is_recorded_and_the_caller_may_try_again() -> None:
    flow = login_at_pin()
    type_pin(flow, "9999#")
    execute = only(flow.handle(PinChecked(ok=False), NOW), Execute)
    assert isinstance(execute, Execute)
    assert isinstance(execute.command, RecordPinFailure)
    assert (execute.command.user, execute.command.desk) == ("100", "HD0001")
    rejected = PinRejected(
        event_id="e", at=NOW, cause=CAUSE, correlation_id="c", user="100", desk="HD0001", failures=1
    )
    actions = flow.handle(CommandDone([rejected]), NOW)
    assert plays(actions) == [["en/pin-wrong", "en/enter-pin"]]
    assert not flow.finished


def test_three_wrong_pins_in_one_call_end_it() -> None:
    flow = login_at_pin()
    for attempt in range(3):
        type_pin(flow, "0#")
        flow.handle(PinChecked(ok=False), NOW)
        actions = flow.handle(CommandDone([rejected(attempt + 1)]), NOW)
        if attempt < 2:
            assert not flow.finished
    assert plays(actions) == [["en/pin-wrong", "en/goodbye"]]
    assert ends_call(actions)


def test_the_failure_that_reaches_the_lockout_plays_the_lockout_prompt() -> None:
    flow = login_at_pin()
    type_pin(flow, "0#")
    flow.handle(PinChecked(ok=False), NOW)
    locked = PinLockedOut(
        event_id="e", at=NOW, cause=CAUSE, correlation_id="c", user="100", desk="HD0001", until=NOW
    )
    actions = flow.handle(CommandDone([locked]), NOW)
    assert plays(actions) == [["en/pin-wrong", "en/locked-out"]]
    assert ends_call(actions)


def test_a_failure_refused_because_of_a_lockout_plays_the_lockout_prompt() -> None:
    flow = login_at_pin()
    type_pin(flow, "0#")
    flow.handle(PinChecked(ok=False), NOW)
    actions = flow.handle(CommandFailed("locked_out"), NOW)
    assert plays(actions) == [["en/locked-out"]]
    assert ends_call(actions)


@pytest.mark.parametrize(
    ("code", "prompt"),
    [
        ("desk_changed", "en/desk-busy"),
        ("locked_out", "en/locked-out"),
        ("conflict", "en/error"),
        ("seated_elsewhere", "en/error"),
    ],
)
def test_ledger_refusals_of_the_login_map_to_prompts(code: str, prompt: str) -> None:
    flow = login_at_pin()
    type_pin(flow, "1234#")
    flow.handle(PinChecked(ok=True), NOW)
    actions = flow.handle(CommandFailed(code), NOW)
    assert plays(actions) == [[prompt]]
    assert ends_call(actions)


def test_a_user_seated_elsewhere_is_told_where_only_after_the_right_pin() -> None:
    flow = login_at_pin(Facts(desk_user=None, user_desk="HD0002"))
    verify = only(type_pin(flow, "1234#"), VerifyPin)
    assert isinstance(verify, VerifyPin)
    actions = flow.handle(PinChecked(ok=True), NOW)
    assert plays(actions) == [
        [
            "en/logged-in-elsewhere",
            "en/letter-h",
            "en/letter-d",
            "en/digit-0",
            "en/digit-0",
            "en/digit-0",
            "en/digit-2",
            "en/press-1-to-move",
        ]
    ]
    execute = only(flow.handle(Digit("1"), NOW), Execute)
    assert isinstance(execute, Execute)
    assert isinstance(execute.command, LogIn)
    assert execute.command.move is True


def test_a_wrong_pin_of_a_user_seated_elsewhere_does_not_say_where() -> None:
    flow = login_at_pin(Facts(desk_user=None, user_desk="HD0002"))
    type_pin(flow, "9#")
    flow.handle(PinChecked(ok=False), NOW)
    actions = flow.handle(CommandDone([rejected()]), NOW)
    assert plays(actions) == [["en/pin-wrong", "en/enter-pin"]]


def at_move_question() -> tuple[CallFlow, Play]:
    flow = login_at_pin(Facts(desk_user=None, user_desk="HD0002"))
    type_pin(flow, "1234#")
    play = only(flow.handle(PinChecked(ok=True), NOW), Play)
    assert isinstance(play, Play)
    return flow, play


def test_another_key_than_1_repeats_the_move_question() -> None:
    flow, _ = at_move_question()
    assert plays(flow.handle(Digit("5"), NOW)) == [["en/press-1-to-move"]]


def test_silence_after_the_move_question_ends_the_call() -> None:
    flow, play = at_move_question()
    timer = only(flow.handle(PromptsDone(play.play_id, completed=True), NOW), StartDigitTimer)
    assert isinstance(timer, StartDigitTimer)
    actions = flow.handle(DigitTimeout(timer.token), NOW)
    assert plays(actions) == [["en/goodbye"]]
    assert ends_call(actions)


def test_the_digit_timer_starts_when_the_pin_prompt_ends_and_restarts_per_digit() -> None:
    flow = CallFlow(dial(), DIRECTORY)
    play = only(flow.start(NOW), Play)
    assert isinstance(play, Play)
    first = only(flow.handle(PromptsDone(play.play_id, completed=True), NOW), StartDigitTimer)
    assert first == StartDigitTimer(8.0, 1)
    second = only(flow.handle(Digit("1"), NOW), StartDigitTimer)
    assert isinstance(second, StartDigitTimer)
    assert second.token == 2
    assert flow.handle(DigitTimeout(1), NOW) == []  # a stale timer is ignored


def test_a_digit_timeout_after_some_digits_submits_them() -> None:
    flow = login_at_pin()
    actions = type_pin(flow, "12")
    timer = only(actions, StartDigitTimer)
    assert isinstance(timer, StartDigitTimer)
    actions = answer_lookup(flow, flow.handle(DigitTimeout(timer.token), NOW))
    assert only(actions, VerifyPin) == VerifyPin(pin="12", pin_hash="$argon2-ann")


def test_a_digit_timeout_without_digits_asks_again_then_gives_up() -> None:
    flow = login_at_pin()
    for _ in range(2):
        actions = flow.handle(DigitTimeout(flow.timer_token), NOW)
        assert plays(actions) == [["en/enter-pin"]]
    actions = flow.handle(DigitTimeout(flow.timer_token), NOW)
    assert plays(actions) == [["en/goodbye"]]
    assert ends_call(actions)


def test_star_clears_the_digits_typed_so_far() -> None:
    flow = login_at_pin()
    type_pin(flow, "99*")
    assert only(type_pin(flow, "1234#"), VerifyPin) == VerifyPin(pin="1234", pin_hash="$argon2-ann")


def test_digits_while_the_pin_is_being_checked_are_ignored() -> None:
    flow = login_at_pin()
    type_pin(flow, "1234#")
    assert flow.handle(Digit("5"), NOW) == []


def test_hanging_up_mid_pin_ends_the_flow_quietly() -> None:
    flow = login_at_pin()
    type_pin(flow, "12")
    assert flow.handle(CallGone(), NOW) == [CancelDigitTimer()]
    assert flow.finished
    assert flow.handle(Digit("#"), NOW) == []


# --- logout -----------------------------------------------------------------------------
def test_logout_by_code_logs_the_seated_user_out() -> None:
    flow = CallFlow(dial("logout", ""), DIRECTORY)
    assert flow.start(NOW) == [Lookup(desk="HD0001", user=None)]
    execute = only(flow.handle(Facts(desk_user="101"), NOW), Execute)
    assert isinstance(execute, Execute)
    assert isinstance(execute.command, LogOut)
    assert (execute.command.desk, execute.command.user, execute.command.reason) == (
        "HD0001",
        "101",
        LogoutReason.USER_CODE,
    )
    actions = flow.handle(CommandDone([logged_out()]), NOW)
    assert plays(actions) == [["de/logged-out"]]  # in the leaving user's language
    assert ends_call(actions)


def test_logout_by_the_phones_key_is_recorded_as_user_key() -> None:
    flow = CallFlow(dial("logout", "", via_key=True), DIRECTORY)
    flow.start(NOW)
    execute = only(flow.handle(Facts(desk_user="100"), NOW), Execute)
    assert isinstance(execute, Execute)
    assert isinstance(execute.command, LogOut)
    assert execute.command.reason is LogoutReason.USER_KEY


def test_logout_from_an_idle_desk_says_the_desk_is_not_in_use() -> None:
    flow = CallFlow(dial("logout", ""), DIRECTORY)
    flow.start(NOW)
    actions = flow.handle(Facts(desk_user=None), NOW)
    assert plays(actions) == [["en/desk-not-in-use"]]
    assert ends_call(actions)


@pytest.mark.parametrize(
    ("code", "prompt"),
    [
        ("desk_idle", "en/desk-not-in-use"),
        ("desk_changed", "en/desk-busy"),
        ("conflict", "en/error"),
    ],
)
def test_ledger_refusals_of_the_logout_map_to_prompts(code: str, prompt: str) -> None:
    flow = CallFlow(dial("logout", ""), DIRECTORY)
    flow.start(NOW)
    flow.handle(Facts(desk_user="100"), NOW)
    assert plays(flow.handle(CommandFailed(code), NOW)) == [[prompt]]


def test_an_unknown_feature_plays_the_error_prompt() -> None:
    actions = CallFlow(dial("pickup", ""), DIRECTORY).start(NOW)
    assert plays(actions) == [["en/error"]]


def test_desk_names_are_spelled_letter_by_letter() -> None:
    assert spell_desk("HD0012") == [
        "letter-h",
        "letter-d",
        "digit-0",
        "digit-0",
        "digit-1",
        "digit-2",
    ]


# --- ledger answers that appended nothing -------------------------------------------------
def test_a_pin_failure_the_ledger_did_not_record_ends_the_call_with_the_error_prompt() -> None:
    flow = login_at_pin()
    type_pin(flow, "9#")
    flow.handle(PinChecked(ok=False), NOW)
    actions = flow.handle(CommandDone([]), NOW)
    assert plays(actions) == [["en/error"]]
    assert ends_call(actions)


def test_a_login_the_ledger_did_not_record_is_not_announced() -> None:
    flow = login_at_pin()
    type_pin(flow, "1234#")
    flow.handle(PinChecked(ok=True), NOW)
    actions = flow.handle(CommandDone([]), NOW)
    assert plays(actions) == [["en/error"]]


def test_logging_in_where_the_user_already_sits_is_announced_though_nothing_changed() -> None:
    flow = login_at_pin(Facts(desk_user="100", user_desk="HD0001"))
    type_pin(flow, "1234#")
    flow.handle(PinChecked(ok=True), NOW)
    actions = flow.handle(CommandDone([]), NOW)
    assert plays(actions) == [["en/logged-in"]]


def test_a_logout_the_ledger_did_not_record_is_not_announced() -> None:
    flow = CallFlow(dial("logout", ""), DIRECTORY)
    flow.start(NOW)
    flow.handle(Facts(desk_user="101"), NOW)
    actions = flow.handle(CommandDone([]), NOW)
    assert plays(actions) == [["de/error"]]


def test_command_ids_come_from_the_claim_not_the_phones_call_id() -> None:
    first = login_at_pin()
    second = CallFlow(dial(), DIRECTORY, claim_id="claim-2")
    second.start(NOW)
    ids = []
    for flow in (first, second):
        type_pin(flow, "9#")
        execute = only(flow.handle(PinChecked(ok=False), NOW), Execute)
        assert isinstance(execute, Execute)
        ids.append(execute.command.command_id)
        assert execute.command.cause.call_id == "call-1"  # still traceable to the call
    assert ids[0] != ids[1]
    assert ids[1] == "ivr:claim-2:1"
    assert "call-1" not in ids[0]
