"""URIs and structured header values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotdesk_sip_edge.sip.headers import (
    HeaderError,
    parse_auth,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from hotdesk_sip_edge.sip.uri import SipUri, UnsupportedUriScheme, UriError, parse_uri


def test_sip_uri_with_password_port_params_and_headers() -> None:
    uri = parse_uri("sips:alice:secret@[2001:db8::10]:5061;transport=tcp;lr?subject=hi&x=y")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert (uri.host, uri.port) == ("2001:db8::10", 5061)
    assert uri.param("transport") == "tcp"
    assert uri.param("lr") == ""
    assert uri.headers == (("subject", "hi"), ("x", "y"))
    assert str(uri) == "sips:alice:secret@[2001:db8::10]:5061;transport=tcp;lr?subject=hi&x=y"


def test_tel_uri_keeps_the_number_in_the_user_part() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert uri.user == "+1-201-555-0123"
    assert uri.host == ""
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    "text", ["sip:", "sip:user@", "sip:a@b:99999", "sip:a@[::1", "sip:a b@c", "nouri"]
)
def test_malformed_uris_raise_uri_error(text: str) -> None:
    with pytest.raises(UriError):
        parse_uri(text)


def test_unknown_scheme_is_its_own_error() -> None:
    with pytest.raises(UnsupportedUriScheme):
        parse_uri("isbn:2983792873")


_PART = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,", min_size=1, max_size=10
)


@given(
    st.sampled_from(["sip", "sips"]),
    st.none() | _PART,
    st.sampled_from(["example.com", "10.0.0.1", "2001:db8::1", "a-b.c"]),
    st.none() | st.integers(0, 65535),
    st.lists(
        st.tuples(
            st.sampled_from(["lr", "transport", "x-y"]),
            st.none() | _PART.filter(lambda s: "?" not in s and ";" not in s),
        ),
        max_size=3,
    ),
)
def test_uris_round_trip(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
) -> None:
    uri = SipUri(scheme, user, host, port, None, tuple(params))
    assert parse_uri(str(uri)) == uri


def test_via_with_received_rport_and_ipv6() -> None:
    via = parse_via("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKabc;rport;received=192.0.2.1")[0]
    assert via.host == "[2001:db8::9]"
    assert via.port == 5070
    assert via.branch == "z9hG4bKabc"
    assert via.wants_rport
    assert via.rport is None
    assert via.received == "192.0.2.1"
    filled = via.with_param("rport", "4000")
    assert filled.rport == 4000
    assert parse_via(str(filled))[0] == filled


def test_via_without_branch_value_or_with_empty_params_is_refused() -> None:
    with pytest.raises(HeaderError):
        parse_via("SIP/2.0/UDP 192.0.2.15;;,;,,")


def test_name_addr_with_quoted_display_and_tag() -> None:
    addr = parse_name_addr('"Alice \\"A\\" Smith" <sip:100@example.com>;tag=abc')
    assert addr.display == 'Alice "A" Smith'
    assert addr.tag == "abc"
    assert parse_name_addr(str(addr)) == addr


def test_unquoted_display_name_with_comma_is_refused() -> None:
    with pytest.raises(HeaderError):
        parse_name_addr("Bell, Alexander <sip:a@example.com>")


def test_contact_star_instance_reg_id_and_expires() -> None:
    assert parse_contacts("*") is None
    contacts = parse_contacts(
        "<sip:HD0001@192.0.2.7:5062;transport=udp>;expires=600;"
        '+sip.instance="<urn:uuid:1234>";reg-id=1, <sip:x@h>'
    )
    assert contacts is not None
    assert len(contacts) == 2
    assert contacts[0].expires == 600
    assert contacts[0].instance == "<urn:uuid:1234>"
    assert contacts[0].reg_id == "1"


def test_cseq_number_must_stay_below_two_to_the_31() -> None:
    assert parse_cseq("  42   INVITE").seq == 42
    with pytest.raises(HeaderError):
        parse_cseq("2147483648 INVITE")


def test_authorization_params_are_unquoted_and_lower_cased() -> None:
    scheme, params = parse_auth(
        'Digest username="HD0001", Realm="hotdesk", nonce="n,1", uri="sip:127.0.0.1", '
        'response="abc", qop=auth, nc=00000001, cnonce="c"'
    )
    assert scheme == "Digest"
    assert params["realm"] == "hotdesk"
    assert params["nonce"] == "n,1"
    assert params["qop"] == "auth"
