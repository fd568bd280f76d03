"""The message parser against RFC 4475 torture messages, phone captures, round trips
and fuzzing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotdesk_sip_edge.sip.message import (
    SipParseError,
    SipRequest,
    SipResponse,
    frame_length,
    parse,
)
from hotdesk_sip_edge.sip.uri import parse_uri

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "sip-samples"
TORTURE = SAMPLES / "rfc4475"


def _sample(name: str) -> bytes:
    return (TORTURE / name).read_bytes()


@pytest.mark.parametrize("name", sorted(p.name for p in (TORTURE / "valid").glob("*.dat")))
def test_every_valid_torture_message_parses(name: str) -> None:
    message = parse(_sample(f"valid/{name}"))
    assert isinstance(message, SipRequest | SipResponse)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("badinv01.dat", 400),
        ("clerr.dat", 400),
        ("ncl.dat", 400),
        ("scalar02.dat", 400),
        ("lwsruri.dat", 400),
        ("lwsstart.dat", 400),
        ("escruri.dat", 400),
        ("baddn.dat", 400),
        ("badvers.dat", 505),
        ("mismatch01.dat", 400),
        ("bigcode.dat", 400),
    ],
)
def test_invalid_torture_messages_are_refused_with_the_right_code(name: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse(_sample(f"invalid/{name}"))
    assert info.value.status == status


def test_invalid_response_is_never_answered() -> None:
    with pytest.raises(SipParseError) as info:
        parse(_sample("invalid/bigcode.dat"))
    assert not info.value.can_respond


def test_bad_content_length_request_can_still_be_answered() -> None:
    with pytest.raises(SipParseError) as info:
        parse(_sample("invalid/clerr.dat"))
    assert info.value.can_respond
    assert info.value.partial is not None
    assert info.value.partial.call_id.startswith("clerr.")


@pytest.mark.parametrize("name", ["multi01.dat", "mcl01.dat"])
def test_duplicate_single_value_headers_are_bad_requests(name: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse(_sample(f"semantics/{name}"))
    assert info.value.status == 400


def test_unlisted_archive_extra_is_refused() -> None:
    with pytest.raises(SipParseError):
        parse(_sample("unlisted/test.dat"))


def test_datagram_trailing_octets_after_content_length_are_discarded() -> None:
    message = parse(_sample("valid/dblreq.dat"))
    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"
    assert message.body == b""


def test_folded_and_compact_headers_are_unfolded_to_long_names() -> None:
    message = parse(_sample("valid/wsinv.dat"))
    assert isinstance(message, SipRequest)
    assert message.to.tag == "1918181833n"
    assert message.from_.display == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    assert message.cseq.seq == 9
    assert [v.transport for v in message.vias] == ["UDP", "TCP", "UDP"]
    assert message.vias[1].branch == "z9hG4bK9ikj8"
    assert message.headers.get("Subject") == ""
    contacts = message.contacts()
    assert contacts is not None
    assert contacts[0].display == 'Quoted string ""'
    assert len(message.body) == 150


def test_semicolon_in_user_part_is_not_a_uri_parameter() -> None:
    message = parse(_sample("valid/semiuri.dat"))
    assert isinstance(message, SipRequest)
    uri = parse_uri(message.uri)
    assert uri.user == "user;par=u%40example.net"
    assert uri.user_unescaped() == "user;par=u@example.net"
    assert uri.host == "example.com"


def test_escaped_header_name_is_an_unknown_header() -> None:
    message = parse(_sample("valid/esc02.dat"))
    assert isinstance(message, SipRequest)
    assert message.method == "RE%47IST%45R"
    contacts = message.contacts()
    assert contacts is not None
    assert len(contacts) == 2
    assert message.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_contact_parameter_outside_angle_brackets_belongs_to_the_header() -> None:
    message = parse(_sample("semantics/cparam01.dat"))
    contacts = message.contacts()
    assert contacts is not None
    assert contacts[0].uri is not None
    assert not contacts[0].uri.params
    assert ("unknownparam", None) in contacts[0].params
    inner = parse(_sample("semantics/cparam02.dat")).contacts()
    assert inner is not None
    assert inner[0].uri is not None
    assert inner[0].uri.has_param("unknownparam")


def test_unknown_request_uri_scheme_parses_for_the_application_to_refuse() -> None:
    message = parse(_sample("semantics/unkscm.dat"))
    assert isinstance(message, SipRequest)
    assert message.uri.startswith("nobodyKnowsThisScheme:")


def test_oversized_request_is_refused_with_513_and_can_be_answered() -> None:
    data = _sample("valid/longreq.dat")
    with pytest.raises(SipParseError) as info:
        parse(data, max_bytes=1000)
    assert info.value.status == 513
    assert info.value.can_respond


@pytest.mark.parametrize("name", sorted(p.name for p in (SAMPLES / "phones").glob("*.sip")))
def test_phone_captures_parse_and_survive_a_round_trip(name: str) -> None:
    message = parse((SAMPLES / "phones" / name).read_bytes())
    again = parse(message.serialize())
    assert again.headers.items == [
        (k, v) for k, v in message.headers.items if k != "Content-Length"
    ] + [("Content-Length", str(len(message.body)))]
    assert again.body == message.body


def test_yealink_register_exposes_contact_instance_and_expires() -> None:
    message = parse((SAMPLES / "phones" / "yealink-register.sip").read_bytes())
    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"
    assert message.top_via.branch is not None
    assert message.contacts()


def test_stream_framing_waits_for_the_whole_body_then_cuts_one_message() -> None:
    data = _sample("valid/wsinv.dat")
    assert frame_length(data[:100]) is None
    assert frame_length(data[:-1]) is None
    assert frame_length(data + b"OPTIONS") == len(data)


def test_stream_framing_refuses_a_message_without_content_length() -> None:
    data = _sample("semantics/inv2543.dat")
    with pytest.raises(SipParseError):
        frame_length(data)


_TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "INFO"]))
    user = draw(_TOKENS)
    host = draw(st.sampled_from(["example.com", "127.0.0.1", "[2001:db8::1]"]))
    port = draw(st.none() | st.integers(1, 65535))
    hp = host if port is None else f"{host}:{port}"
    uri = f"sip:{user}@{hp}"
    branch = "z9hG4bK" + draw(_TOKENS)
    body = draw(st.binary(max_size=64))
    message = parse(
        (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {hp};branch={branch};rport\r\n"
            f'From: "{draw(_TOKENS)}" <sip:{draw(_TOKENS)}@example.com>;tag={draw(_TOKENS)}\r\n'
            f"To: <{uri}>\r\n"
            f"Call-ID: {draw(_TOKENS)}@{draw(_TOKENS)}\r\n"
            f"CSeq: {draw(st.integers(0, 2**31 - 1))} {method}\r\n"
            f"Max-Forwards: {draw(st.integers(0, 255))}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    assert isinstance(message, SipRequest)
    return message


@settings(deadline=None)
@given(requests())
def test_serialized_requests_parse_back_to_the_same_message(message: SipRequest) -> None:
    again = parse(message.serialize())
    assert isinstance(again, SipRequest)
    assert again.method == message.method
    assert again.uri == message.uri
    assert again.headers.items == message.headers.items
    assert again.body == message.body
    assert again.top_via == message.top_via


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_nothing_but_sip_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse(data)


_VALID = [p.read_bytes() for p in sorted((TORTURE / "valid").glob("*.dat"))] + [
    p.read_bytes() for p in sorted((SAMPLES / "phones").glob("*.sip"))
]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(_VALID),
    st.lists(
        st.tuples(
            st.integers(0, 4000), st.integers(0, 255), st.sampled_from(["set", "del", "ins"])
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_mutated_valid_messages_raise_nothing_but_sip_parse_error(
    data: bytes, edits: list[tuple[int, int, str]]
) -> None:
    buf = bytearray(data)
    for pos, byte, op in edits:
        i = pos % (len(buf) + 1)
        if op == "ins" or i == len(buf):
            buf.insert(i, byte)
        elif op == "set":
            buf[i] = byte
        else:
            del buf[i]
    for stream in (False, True):
        try:
            message = parse(bytes(buf), stream=stream)
        except SipParseError:
            continue
        # Whatever parses must also serialize and parse again.
        parse(message.serialize())
        with contextlib.suppress(SipParseError):
            frame_length(bytes(buf))
