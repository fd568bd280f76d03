from __future__ import annotations

import pytest

from hotdesk_contracts import subjects


def test_ledger_subjects_follow_the_documented_shape() -> None:
    assert subjects.desk_ledger("HD0001") == "hotdesk.ledger.desk.HD0001"
    assert subjects.user_ledger("100") == "hotdesk.ledger.user.100"


@pytest.mark.parametrize("bad", ["", "HD.0001", "*", ">", "a b", "HD0001.>"])
def test_a_token_that_could_widen_a_subject_is_refused(bad: str) -> None:
    with pytest.raises(subjects.SubjectTokenError):
        subjects.desk_ledger(bad)


def test_call_ids_are_made_safe_as_one_token() -> None:
    subject = subjects.edge_call_event("a84b4c76e66710@pc33.atlanta.example.com", "dtmf")
    assert subject.count(".") == 4
    assert subject.endswith(".dtmf")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("a.b@host", "a_b_host"),
        ("a@b", "a.b"),
        ("x" * 200 + "1", "x" * 200 + "2"),
    ],
)
def test_distinct_call_ids_never_share_a_subject(one: str, other: str) -> None:
    assert subjects.edge_call_events(one) != subjects.edge_call_events(other)
    assert subjects.edge_call_event(one, "dtmf") != subjects.edge_call_event(other, "dtmf")


def test_the_call_token_is_the_same_for_the_same_call_id() -> None:
    call_id = "a84b4c76e66710@pc33.atlanta.example.com"
    assert subjects.call_token(call_id) == subjects.call_token(call_id)
    assert len(subjects.call_token(call_id)) == 32
