"""Classifying dialled strings, and the dial-code checks of check-config."""

from __future__ import annotations

import pytest

from hotdesk_contracts import dialplan
from hotdesk_contracts.directory import DialCodes, Directory, Extension, OtherCode


def _directory(**kw: object) -> Directory:
    base: dict[str, object] = {
        "extensions": [Extension(number=n, name=f"User {n}") for n in ("100", "101")],
        "emergency_numbers": ["112", "911"],
    }
    base.update(kw)
    return Directory(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("*77*100*", dialplan.Login("100")),
        ("*77*5*", dialplan.Logout()),
        ("112", dialplan.Emergency("112")),
        ("101", dialplan.Internal("101")),
        ("5551234", dialplan.External("5551234")),
        ("+4930123456", dialplan.External("+4930123456")),
    ],
)
def test_dialled_strings_are_classified(dialled: str, expected: object) -> None:
    assert dialplan.classify(dialled, _directory()) == expected


def test_an_incomplete_hotdesk_code_is_invalid_not_external() -> None:
    assert isinstance(dialplan.classify("*77*100", _directory()), dialplan.Invalid)
    assert isinstance(dialplan.classify("*7", _directory()), dialplan.Invalid)


def test_a_string_matching_two_codes_is_a_conflict_naming_both() -> None:
    directory = _directory(dial_codes=DialCodes(other=[OtherCode(code="*77", name="intercom")]))
    result = dialplan.classify("*77*100*", directory)
    assert isinstance(result, dialplan.Conflict)
    assert "*77" in result.codes
    assert "*77*<ext>*" in result.codes


def test_check_config_refuses_another_code_under_the_hotdesk_prefix() -> None:
    directory = _directory(dial_codes=DialCodes(other=[OtherCode(code="*78", name="dnd")]))
    problems = dialplan.dial_code_problems(directory)
    assert [key for key, _ in problems] == ["dial_codes.other[0].code"]
    assert "*7" in problems[0][1]


def test_check_config_refuses_ambiguous_and_duplicate_codes() -> None:
    codes = DialCodes(
        other=[
            OtherCode(code="*8", name="pickup"),
            OtherCode(code="*81", name="directed pickup"),
            OtherCode(code="*8", name="again"),
        ]
    )
    problems = dict(dialplan.dial_code_problems(_directory(dial_codes=codes)))
    assert "ambiguous" in problems["dial_codes.other[1].code"]
    assert "twice" in problems["dial_codes.other[2].code"]


def test_an_extension_may_not_collide_with_the_logout_code() -> None:
    directory = _directory(
        extensions=[Extension(number="50", name="x")], dial_codes=DialCodes(logout="*77*50*")
    )
    problems = dict(dialplan.dial_code_problems(directory))
    assert "extension 50" in problems["dial_codes.logout"]


def test_a_clean_table_has_no_problems() -> None:
    codes = DialCodes(other=[OtherCode(code="*8", name="pickup"), OtherCode(code="*9", name="vm")])
    assert dialplan.dial_code_problems(_directory(dial_codes=codes)) == []


@pytest.mark.parametrize(("code", "emergency"), [("9", "911"), ("11", "112"), ("1", "112")])
def test_a_dial_code_never_swallows_an_emergency_number(code: str, emergency: str) -> None:
    directory = _directory(dial_codes=DialCodes(other=[OtherCode(code=code, name="outside")]))
    assert dialplan.classify(emergency, directory) == dialplan.Emergency(emergency)


@pytest.mark.parametrize(("code", "emergency"), [("9", "911"), ("11", "112"), ("1120", "112")])
def test_check_config_refuses_a_code_overlapping_an_emergency_number(
    code: str, emergency: str
) -> None:
    directory = _directory(dial_codes=DialCodes(other=[OtherCode(code=code, name="outside")]))
    problems = dict(dialplan.dial_code_problems(directory))
    message = problems["dial_codes.other[0].code"]
    assert repr(code) in message
    assert repr(emergency) in message
    assert "choose a code" in message
