"""HTTP Digest (RFC 7616) and Basic (RFC 7617) checks of the provisioning server."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotdesk_provisioner.httpauth import (
    REALM,
    AuthHeaderError,
    Verdict,
    challenge,
    digest_response,
    make_nonce,
    parse_authorization,
    verify,
)

KEY = b"nonce-key"


def digest_header(
    user: str, password: str, uri: str, nonce: str, *, realm: str = REALM, header_uri: str = ""
) -> str:
    response = digest_response(
        user, password, "GET", header_uri or uri, nonce, "00000001", "abc", realm
    )
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", '
        f'uri="{header_uri or uri}", qop=auth, nc=00000001, cnonce="abc", '
        f'response="{response}", algorithm=MD5'
    )


def test_md5_response_matches_the_rfc_7616_example() -> None:
    # RFC 7616 §3.9.1, the MD5 variant.
    response = digest_response(
        "Mufasa",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "00000001",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        realm="http-auth@example.org",
    )
    assert response == "8ca523f5e9506fed4657c9700eebdbec"


def test_right_digest_is_accepted_and_a_wrong_password_refused() -> None:
    nonce = make_nonce(KEY, 1000.0)
    creds = parse_authorization(digest_header("HD0001", "pw", "/a.cfg", nonce))
    assert verify(creds, "pw", "GET", "/a.cfg", KEY, 1010.0, 300) is Verdict.OK
    assert verify(creds, "other", "GET", "/a.cfg", KEY, 1010.0, 300) is Verdict.BAD


def test_an_old_nonce_with_the_right_answer_is_stale() -> None:
    nonce = make_nonce(KEY, 1000.0)
    creds = parse_authorization(digest_header("HD0001", "pw", "/a.cfg", nonce))
    assert verify(creds, "pw", "GET", "/a.cfg", KEY, 1301.0, 300) is Verdict.STALE


def test_a_nonce_from_another_key_is_refused() -> None:
    nonce = make_nonce(b"someone-else", 1000.0)
    creds = parse_authorization(digest_header("HD0001", "pw", "/a.cfg", nonce))
    assert verify(creds, "pw", "GET", "/a.cfg", KEY, 1001.0, 300) is Verdict.BAD


def test_credentials_for_another_uri_do_not_open_this_one() -> None:
    nonce = make_nonce(KEY, 1000.0)
    creds = parse_authorization(digest_header("HD0001", "pw", "/a.cfg", nonce))
    assert verify(creds, "pw", "GET", "/b.cfg", KEY, 1001.0, 300) is Verdict.BAD


def test_another_realm_is_refused() -> None:
    nonce = make_nonce(KEY, 1000.0)
    creds = parse_authorization(digest_header("HD0001", "pw", "/a.cfg", nonce, realm="x"))
    assert verify(creds, "pw", "GET", "/a.cfg", KEY, 1001.0, 300) is Verdict.BAD


def test_basic_credentials_are_checked() -> None:
    header = "Basic " + base64.b64encode(b"HD0001:p:w").decode()
    creds = parse_authorization(header)
    assert (creds.username, creds.params["password"]) == ("HD0001", "p:w")
    assert verify(creds, "p:w", "GET", "/", KEY, 0.0, 300) is Verdict.OK
    assert verify(creds, "pw", "GET", "/", KEY, 0.0, 300) is Verdict.BAD


def test_challenges_name_the_realm_and_md5() -> None:
    digest = challenge("digest", KEY, 0.0, stale=True)
    assert digest.startswith(f'Digest realm="{REALM}", qop="auth", algorithm=MD5, nonce="')
    assert digest.endswith("stale=true")
    assert challenge("basic", KEY, 0.0) == f'Basic realm="{REALM}", charset="UTF-8"'


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        'Digest username="a"',
    ],
)
def test_malformed_authorization_is_a_typed_error(header: str) -> None:
    with pytest.raises(AuthHeaderError):
        parse_authorization(header)


@given(
    user=st.text(
        alphabet=st.characters(exclude_characters='"\\\r\n', exclude_categories=["Cs"]),
        min_size=1,
    ),
    uri=st.from_regex(r"/[a-zA-Z0-9._-]{1,30}", fullmatch=True),
)
def test_digest_header_parameters_round_trip(user: str, uri: str) -> None:
    header = digest_header(user, "pw", uri, "bm9uY2U=")
    creds = parse_authorization(header)
    assert creds.username == user
    assert creds.params["uri"] == uri
    assert creds.params["nonce"] == "bm9uY2U="


@given(st.text())
def test_any_header_either_parses_or_raises_the_typed_error(header: str) -> None:
    with contextlib.suppress(AuthHeaderError):
        parse_authorization(header)
