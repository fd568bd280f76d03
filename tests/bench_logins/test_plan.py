"""The SIPp side of the logins benchmark: who logs in where, and the scenario text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.logins.scenario import Login, capture, injection_file, plan, scenario_xml

DESKS = [(f"HD{n:04d}", f"pw{n}") for n in range(3)]
USERS = [str(200 + n) for n in range(6)]


@given(first=st.integers(0, 50), count=st.integers(1, 40))
def test_every_planned_call_changes_its_desks_user_and_no_user_sits_at_two_desks(
    first: int, count: int
) -> None:
    seated: dict[str, str] = {}
    homes: dict[str, str] = {}

    def sit(logins: list[Login]) -> None:
        for login in logins:
            assert seated.get(login.desk) != login.user
            seated[login.desk] = login.user
            assert homes.setdefault(login.user, login.desk) == login.desk

    sit(plan(DESKS, USERS, 0, first))
    sit(plan(DESKS, USERS, first, count, seated))


def test_next_step_seats_someone_else_where_the_ledger_says_a_call_failed() -> None:
    first = plan(DESKS, USERS, 0, 3)
    seated = {login.desk: login.user for login in first}
    seated["HD0001"] = "999"  # that desk's login never happened: its old user stayed
    seated.pop("HD0002")  # and this one was logged out meanwhile
    second = plan(DESKS, USERS, 3, 3, seated)
    assert [(login.desk, login.user) for login in second] == [
        ("HD0000", "203"),
        ("HD0001", "201"),
        ("HD0002", "202"),
    ]
    assert plan(DESKS, USERS, 3, 3, {"HD0001": "201"})[1].user == "204"


def test_plan_needs_two_users_per_desk() -> None:
    with pytest.raises(ValueError, match="3 desks need 6 users"):
        plan(DESKS, USERS[:5], 0, 1)


def test_injection_file_carries_desk_credentials_and_extension() -> None:
    text = injection_file(plan(DESKS, USERS, 0, 2))
    assert text.splitlines() == [
        "SEQUENTIAL",
        "HD0000;[authentication username=HD0000 password=pw0];200",
        "HD0001;[authentication username=HD0001 password=pw1];201",
    ]


def test_injection_file_refuses_a_password_that_would_break_the_csv() -> None:
    bad = [("HD0000", "pw;0")]
    with pytest.raises(ValueError, match="cannot go in a SIPp CSV"):
        injection_file(plan(bad, ["1", "2"], 0, 1))


def test_scenario_plays_one_rfc2833_capture_per_digit_and_waits_for_the_bye() -> None:
    root = ET.fromstring(scenario_xml("12#").encode("iso-8859-1"))
    plays = [e.get("play_pcap_audio") for e in root.iter("exec")]
    assert plays == [str(capture("1")), str(capture("2")), str(capture("#"))]
    assert [e.get("request") for e in root.iter("recv") if e.get("request")] == ["BYE"]
    assert [e.get("response") for e in root.iter("recv") if e.get("auth")] == ["401", "407"]


def test_every_dtmf_key_has_a_capture_on_disk() -> None:
    for key in "0123456789*#":
        assert capture(key).is_file()
    with pytest.raises(ValueError, match="no RFC 2833 capture"):
        capture("A")
