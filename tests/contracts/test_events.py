"""Ledger events: golden files decode forever, every event round-trips."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotdesk_contracts import codec, events, golden

GOLDEN = Path(__file__).resolve().parents[2] / "contracts" / "golden"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.name)
def test_every_golden_file_still_decodes_to_its_event(path: Path) -> None:
    name, version, _ = path.name.split(".")
    event = codec.decode_event(path.read_bytes())
    assert type(event).__name__ == name
    assert version == f"v{event.version}"
    assert event.event_id
    assert event.correlation_id
    assert event.cause.actor


def test_every_event_type_and_version_has_a_golden_file() -> None:
    have = {p.name for p in GOLDEN.glob("*.json")}
    for sample in golden.samples():
        assert golden.golden_name(sample) in have, f"write the golden file for {sample!r}"
    assert {type(s) for s in golden.samples()} == set(events.ALL_EVENTS)


def test_golden_files_match_what_the_samples_encode_to() -> None:
    # A sample that encodes differently from its golden file means the wire format of
    # an existing version changed: that needs a new version and an upcaster.
    for sample in golden.samples():
        stored = (GOLDEN / golden.golden_name(sample)).read_bytes()
        assert msgspec.json.decode(stored) == msgspec.json.decode(codec.encode_event(sample))


def test_events_are_frozen() -> None:
    sample = golden.samples()[0]
    with pytest.raises(AttributeError):
        sample.desk = "HD0002"  # type: ignore[misc,union-attr]


def test_an_unknown_event_type_is_a_typed_error() -> None:
    with pytest.raises(codec.EventDecodeError):
        codec.decode_event(b'{"type":"Exploded","version":1}')
    with pytest.raises(codec.EventDecodeError):
        codec.decode_event(b"\xff not json")


def test_additive_fields_from_a_newer_writer_are_ignored() -> None:
    raw = msgspec.json.decode((GOLDEN / "LoggedIn.v1.json").read_bytes())
    raw["some_future_field"] = {"x": 1}
    assert isinstance(codec.decode_event(msgspec.json.encode(raw)), events.LoggedIn)


def test_an_old_version_is_upcast_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend LoggedIn v0 named the desk "phone": the upcaster renames it.
    def v0_to_v1(raw: dict[str, object]) -> dict[str, object]:
        out = dict(raw)
        out["desk"] = out.pop("phone")
        out["version"] = 1
        return out

    monkeypatch.setitem(codec.UPCASTERS, ("LoggedIn", 0), v0_to_v1)
    raw = msgspec.json.decode((GOLDEN / "LoggedIn.v1.json").read_bytes())
    raw["phone"] = raw.pop("desk")
    raw["version"] = 0
    event = codec.decode_event(msgspec.json.encode(raw))
    assert isinstance(event, events.LoggedIn)
    assert event.desk == "HD0001"
    assert event.version == 1


_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
_when = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_cause = st.builds(events.Cause, actor=_text, call_id=st.none() | _text)


@given(
    st.one_of(
        st.builds(
            events.LoggedIn,
            event_id=_text,
            at=_when,
            cause=_cause,
            correlation_id=_text,
            desk=_text,
            user=_text,
        ),
        st.builds(
            events.LoggedOut,
            event_id=_text,
            at=_when,
            cause=_cause,
            correlation_id=_text,
            desk=_text,
            user=_text,
            reason=st.sampled_from(events.LogoutReason),
        ),
        st.builds(
            events.Roamed,
            event_id=_text,
            at=_when,
            cause=_cause,
            correlation_id=_text,
            desk=_text,
            from_user=_text,
            user=_text,
        ),
        st.builds(
            events.PinRejected,
            event_id=_text,
            at=_when,
            cause=_cause,
            correlation_id=_text,
            user=_text,
            desk=_text,
            failures=st.integers(0, 99),
        ),
        st.builds(
            events.PinLockedOut,
            event_id=_text,
            at=_when,
            cause=_cause,
            correlation_id=_text,
            user=_text,
            desk=_text,
            until=_when,
        ),
        st.builds(
            events.PinLockoutCleared,
            event_id=_text,
            at=_when,
            cause=_cause,
            correlation_id=_text,
            user=_text,
        ),
    )
)
def test_every_event_round_trips_through_the_codec(event: events.LedgerEvent) -> None:
    assert codec.decode_event(codec.encode_event(event)) == event
