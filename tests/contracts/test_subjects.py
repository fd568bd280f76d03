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
