"""Transaction deadlines kept in a heap: due keys come back once, earliest first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hotdesk_sip_edge.sip.deadlines import Deadlines


def test_keys_come_back_once_when_their_time_has_come() -> None:
    deadlines = Deadlines()
    deadlines.schedule("b", 2.0)
    deadlines.schedule("a", 1.0)
    deadlines.schedule("none", None)
    assert deadlines.due(0.5) == []
    assert deadlines.due(2.0) == ["a", "b"]
    assert deadlines.due(10.0) == []
    assert len(deadlines) == 0


def test_a_key_is_only_ever_brought_forward_and_is_due_again_once_rescheduled() -> None:
    deadlines = Deadlines()
    deadlines.schedule("k", 5.0)
    deadlines.schedule("k", 9.0)  # later: ignored, the caller finds out at 5.0
    deadlines.schedule("k", 1.0)  # earlier: wins
    assert len(deadlines) == 1
    assert deadlines.due(1.0) == ["k"]
    assert deadlines.due(5.0) == []  # the superseded entry is not a second due time
    deadlines.schedule("k", 9.0)
    assert deadlines.due(9.0) == ["k"]


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), st.sampled_from("abcde"), st.integers(0, 50)),
        st.tuples(st.just("due"), st.just(""), st.integers(0, 50)),
    ),
    max_size=60,
)


@given(_ops)
def test_due_keys_are_those_a_full_scan_would_find(ops: list[tuple[str, str, int]]) -> None:
    deadlines = Deadlines()
    model: dict[str, int] = {}
    for op, key, at in ops:
        if op == "schedule":
            deadlines.schedule(key, float(at))
            model[key] = min(at, model.get(key, at))
        else:
            expected = sorted((t, k) for k, t in model.items() if t <= at)
            assert deadlines.due(float(at)) == [k for _, k in expected]
            for _, k in expected:
                del model[k]
        assert len(deadlines) == len(model)
