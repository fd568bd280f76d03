"""dialog-info bodies: captured phone NOTIFYs parse, renders round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotdesk_sip_edge.blf.dialog_info import (
    IDLE_DIALOG_ID,
    Dialog,
    DialogInfoError,
    Participant,
    document,
    parse,
    render,
)

PHONES = Path(__file__).parents[2] / "data" / "sip-samples" / "phones"


def _body(name: str) -> bytes:
    return (PHONES / name).read_bytes().split(b"\r\n\r\n", 1)[1]


def test_yealink_partial_notify_body_parses_with_tags_direction_and_identities() -> None:
    info = parse(_body("yealink-notify.sip"))
    assert (info.entity, info.version, info.state) == ("sip:1011@10.3.5.199:5060", 3, "partial")
    (dialog,) = info.dialogs
    assert dialog == Dialog(
        id="74",
        state="confirmed",
        call_id="0_2561109579@10.3.20.1",
        local_tag="2778958897",
        remote_tag="1132018898",
        direction="recipient",
        local=Participant(identity="sip:1011@10.3.5.199:5060", target="sip:1011@10.3.5.199:5060"),
        remote=Participant(identity="sip:1010@10.3.5.199:5060", target="sip:1010@10.3.5.199:5060"),
    )


def test_yealink_full_notify_body_parses_both_dialogs() -> None:
    info = parse(_body("yealink-notify-full.sip"))
    assert (info.version, info.state) == (1, "full")
    assert [(d.id, d.state, d.direction) for d in info.dialogs] == [
        ("65626", "confirmed", "initiator"),
        ("65622", "terminated", None),
    ]


def test_snom_notify_body_parses_early_dialog_without_entity() -> None:
    info = parse(_body("snom-notify.sip"))
    assert (info.entity, info.version, info.state) == ("", 9, "full")
    (dialog,) = info.dialogs
    assert (dialog.state, dialog.direction, dialog.call_id) == (
        "early",
        "initiator",
        "e1b50917e909d311824d0090330200d6",
    )
    assert dialog.remote == Participant(identity="sip:211@172.16.16.180")


@pytest.mark.parametrize("name", ["yealink-notify.sip", "yealink-notify-full.sip"])
def test_rendering_a_parsed_yealink_body_gives_the_captured_bytes(name: str) -> None:
    body = _body(name)
    info = parse(body)
    assert render(info.entity, info.version, info.state, list(info.dialogs)) == body


def test_idle_entity_gets_one_terminated_dialog_with_a_stable_id() -> None:
    first = parse(render("sip:100@pbx.example.com", 0, "full", []))
    later = parse(render("sip:100@pbx.example.com", 7, "full", []))
    assert first.dialogs == later.dialogs == (Dialog(id=IDLE_DIALOG_ID, state="terminated"),)


def test_pickup_attributes_are_rendered_for_polycom() -> None:
    body = render(
        "sip:100@pbx.example.com",
        2,
        "full",
        [
            Dialog(
                id="d1",
                state="early",
                call_id="abc@host",
                local_tag="lt",
                remote_tag="rt",
                direction="recipient",
            )
        ],
    )
    assert (
        b'<dialog id="d1" call-id="abc@host" local-tag="lt" remote-tag="rt"'
        b' direction="recipient">' in body
    )


def test_markup_in_values_is_escaped() -> None:
    dialog = Dialog(
        id='a"<b>',
        state="confirmed",
        call_id="x&y",
        remote=Participant(identity="sip:a@b", display='Tom & "Jerry" <x>'),
    )
    info = parse(render("sip:1@h?x=<&>", 0, "full", [dialog]))
    assert info.entity == "sip:1@h?x=<&>"
    assert info.dialogs == (dialog,)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<dialog-info", "well-formed"),
        (b'<x xmlns="urn:ietf:params:xml:ns:dialog-info"/>', "root element"),
        (
            b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="-1"'
            b' state="full" entity="sip:a@b"/>',
            "version",
        ),
        (
            b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1"'
            b' state="some" entity="sip:a@b"/>',
            "document state",
        ),
        (
            b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1"'
            b' state="full" entity="sip:a@b"><dialog id="1"><state>ringing</state>'
            b"</dialog></dialog-info>",
            "unknown state",
        ),
        (
            b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1"'
            b' state="full" entity="sip:a@b"><dialog><state>early</state>'
            b"</dialog></dialog-info>",
            "no id",
        ),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><dialog-info/>', "DOCTYPE"),
    ],
)
def test_malformed_documents_are_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(DialogInfoError, match=reason):
        parse(body)


@pytest.mark.parametrize("char", ["\x00", "\x0b", "\ufffe", "\ud800"])
def test_render_refuses_characters_xml_cannot_carry(char: str) -> None:
    with pytest.raises(DialogInfoError, match="XML cannot carry"):
        render("sip:a@b", 0, "full", [Dialog(id="1", state="early", call_id=f"x{char}")])


def test_a_document_rendered_once_takes_each_subscription_version() -> None:
    doc = document("sip:100@pbx.example.com", "full", [Dialog(id="d1", state="early")])
    assert [parse(doc.with_version(v)).version for v in (0, 9, 10, 12345)] == [0, 9, 10, 12345]
    with pytest.raises(DialogInfoError, match="negative"):
        doc.with_version(-1)
    with pytest.raises(DialogInfoError, match="entity"):
        document("", "full", [])
    with pytest.raises(DialogInfoError, match="full/partial"):
        document("sip:a@b", "draft", [])  # type: ignore[arg-type]


def test_render_refuses_negative_versions_and_duplicate_ids() -> None:
    with pytest.raises(DialogInfoError, match="negative"):
        render("sip:a@b", -1, "full", [])
    dup = Dialog(id="1", state="early")
    with pytest.raises(DialogInfoError, match="unique"):
        render("sip:a@b", 0, "full", [dup, dup])


# Characters XML 1.0 can carry (section 2.2), leading/trailing space aside.
_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=12,
).map(str.strip)
# A display name only exists as an attribute of <identity>.
_participants = st.none() | st.builds(
    lambda identity, display, target: Participant(identity, display if identity else "", target),
    _text,
    _text,
    _text,
)


@st.composite
def _dialogs(draw: st.DrawFn) -> list[Dialog]:
    ids = draw(st.lists(_text.filter(bool), max_size=4, unique=True))
    return [
        Dialog(
            id=dialog_id,
            state=draw(
                st.sampled_from(["trying", "proceeding", "early", "confirmed", "terminated"])
            ),
            call_id=draw(_text),
            local_tag=draw(_text),
            remote_tag=draw(_text),
            direction=draw(st.sampled_from([None, "initiator", "recipient"])),
            event=draw(_text),
            local=draw(_participants),
            remote=draw(_participants),
        )
        for dialog_id in ids
    ]


@given(
    entity=_text.filter(bool),
    version=st.integers(min_value=0, max_value=2**32),
    state=st.sampled_from(["full", "partial"]),
    dialogs=_dialogs(),
)
def test_render_then_parse_gives_back_the_document(
    entity: str, version: int, state: str, dialogs: list[Dialog]
) -> None:
    info = parse(render(entity, version, state, dialogs))  # type: ignore[arg-type]
    assert (info.entity, info.version, info.state) == (entity, version, state)
    assert list(info.dialogs) == (dialogs or [Dialog(id=IDLE_DIALOG_ID, state="terminated")])


@given(
    entity=_text.filter(bool),
    version=st.integers(min_value=0, max_value=2**32),
    state=st.sampled_from(["full", "partial"]),
    dialogs=_dialogs(),
)
def test_a_document_with_a_version_is_the_document_rendered_with_it(
    entity: str, version: int, state: str, dialogs: list[Dialog]
) -> None:
    once = document(entity, state, dialogs)  # type: ignore[arg-type]
    assert once.with_version(version) == render(entity, version, state, dialogs)  # type: ignore[arg-type]
