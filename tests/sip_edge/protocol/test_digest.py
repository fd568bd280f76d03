"""Digest authentication: RFC test vectors, nonces, stale and replay."""

from __future__ import annotations

import hashlib

import pytest

from hotdesk_sip_edge.sip.digest import (
    DigestError,
    DigestResponse,
    NonceCounts,
    NonceState,
    challenge,
    check_nonce,
    expected_response,
    make_nonce,
    parse_authorization,
    verify,
)

SECRET = b"edge-shared-secret"


def test_rfc7616_sha256_and_md5_examples() -> None:
    # RFC 7616 §3.9.1: Mufasa / Circle of Life.
    base = dict(
        username="Mufasa",
        realm="http-auth@example.org",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    md5 = DigestResponse(response="8ca523f5e9506fed4657c9700eebdbec", algorithm="MD5", **base)
    sha = DigestResponse(
        response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        algorithm="SHA-256",
        **base,
    )
    assert verify(md5, "GET", "Circle of Life")
    assert verify(sha, "GET", "Circle of Life")
    assert not verify(sha, "GET", "circle of life")


def test_rfc2617_style_digest_without_qop() -> None:
    creds = DigestResponse("u", "r", "n", "sip:h", response="")
    ha1 = hashlib.md5(b"u:r:pw").hexdigest()
    ha2 = hashlib.md5(b"REGISTER:sip:h").hexdigest()
    want = hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert expected_response(creds, "REGISTER", "pw") == want


def test_nonce_issued_by_any_replica_with_the_secret_is_valid_until_its_lifetime() -> None:
    nonce = make_nonce(SECRET, 1_000_000.0)
    assert check_nonce(SECRET, nonce, 1_000_010.0, 300) is NonceState.VALID
    assert check_nonce(SECRET, nonce, 1_000_400.0, 300) is NonceState.STALE
    assert check_nonce(b"other", nonce, 1_000_010.0, 300) is NonceState.INVALID
    tampered = "zz." + nonce.split(".", 1)[1]
    assert check_nonce(SECRET, tampered, 1_000_010.0, 300) is NonceState.INVALID
    assert make_nonce(SECRET, 1_000_000.0) != nonce
    assert check_nonce(SECRET, "garbage", 1_000_010.0, 300) is NonceState.INVALID


def test_challenge_offers_qop_auth_and_marks_stale() -> None:
    value = challenge("hotdesk", "abc", "SHA-256", stale=True)
    assert 'realm="hotdesk"' in value
    assert "algorithm=SHA-256" in value
    assert 'qop="auth"' in value
    assert value.endswith("stale=true")


def test_authorization_header_is_parsed_with_sipp_style_uri() -> None:
    creds = parse_authorization(
        'Digest username="HD0001",realm="hotdesk",cnonce="6b8b4567",nc=00000001,qop=auth,'
        'uri="sip:127.0.0.1:5060",nonce="n",response="r",algorithm=MD5'
    )
    assert creds.uri == "sip:127.0.0.1:5060"
    assert creds.nc == "00000001"
    assert creds.qop == "auth"


@pytest.mark.parametrize(
    "value",
    [
        "Basic dXNlcjpwYXNz",
        'Digest username="a", realm="r", nonce="n", uri="sip:h"',
        'Digest username="a", realm="r", nonce="n", uri="sip:h", response="x", algorithm=SHA-1',
        'Digest username="a", realm="r", nonce="n", uri="sip:h", response="x", qop=auth',
    ],
)
def test_unusable_authorization_raises_digest_error(value: str) -> None:
    with pytest.raises(DigestError):
        parse_authorization(value)


def test_replayed_nonce_count_is_refused() -> None:
    counts = NonceCounts(capacity=2)
    assert counts.accept("n1", "00000001")
    assert not counts.accept("n1", "00000001")
    assert counts.accept("n1", "00000002")
    assert counts.accept("n2", "00000001")
    assert counts.accept("n3", "00000001")
    # n1 was evicted (oldest); the nonce lifetime bounds what that allows.
    assert counts.accept("n1", "00000001")
