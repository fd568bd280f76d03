"""Authentication rules: no user enumeration, stale nonces, replays, blocks."""

from __future__ import annotations

from hotdesk_sip_edge.auth import Authenticator, Verdict
from hotdesk_sip_edge.sip.digest import DigestResponse, expected_response
from hotdesk_sip_edge.sip.headers import parse_auth
from hotdesk_sip_edge.sip.message import SipRequest, parse

PASSWORDS = {"HD0001": "right"}


def _request(authorization: str = "") -> SipRequest:
    text = (
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
        "From: <sip:HD0001@127.0.0.1>;tag=a\r\nTo: <sip:HD0001@127.0.0.1>\r\n"
        "Call-ID: c\r\nCSeq: 1 REGISTER\r\n"
        + (f"Authorization: {authorization}\r\n" if authorization else "")
        + "Content-Length: 0\r\n\r\n"
    )
    message = parse(text.encode())
    assert isinstance(message, SipRequest)
    return message


def _answer(auth: Authenticator, user: str, password: str, now: float, nc: int = 1) -> str:
    challenge = auth.check(_request(), "Authorization", PASSWORDS.get, "10.0.0.1", now)
    _, params = parse_auth(challenge.challenge)
    creds = DigestResponse(
        user,
        params["realm"],
        params["nonce"],
        "sip:127.0.0.1",
        "",
        "MD5",
        "auth",
        f"{nc:08x}",
        "cn",
    )
    digest = expected_response(creds, "REGISTER", password)
    return (
        f'Digest username="{user}", realm="{creds.realm}", nonce="{creds.nonce}", '
        f'uri="sip:127.0.0.1", response="{digest}", qop=auth, nc={nc:08x}, cnonce="cn"'
    )


def _auth(**kwargs: float) -> Authenticator:
    return Authenticator("hotdesk", b"secret", **kwargs)  # type: ignore[arg-type]


def test_unknown_user_and_wrong_password_get_the_same_verdict() -> None:
    auth = _auth()
    wrong = auth.check(
        _request(_answer(auth, "HD0001", "nope", 100.0)),
        "Authorization",
        PASSWORDS.get,
        "10.0.0.1",
        100.0,
    )
    unknown = auth.check(
        _request(_answer(auth, "HD9999", "nope", 100.0)),
        "Authorization",
        PASSWORDS.get,
        "10.0.0.1",
        100.0,
    )
    assert wrong == unknown
    assert wrong.verdict is Verdict.FORBIDDEN


def test_old_nonce_is_challenged_again_as_stale() -> None:
    auth = _auth(nonce_lifetime=30)
    header = _answer(auth, "HD0001", "right", 100.0)
    result = auth.check(_request(header), "Authorization", PASSWORDS.get, "10.0.0.1", 200.0)
    assert result.verdict is Verdict.CHALLENGE
    assert result.challenge.endswith("stale=true")


def test_replayed_nonce_count_is_challenged_not_accepted() -> None:
    auth = _auth()
    header = _answer(auth, "HD0001", "right", 100.0)
    first = auth.check(_request(header), "Authorization", PASSWORDS.get, "10.0.0.1", 100.0)
    again = auth.check(_request(header), "Authorization", PASSWORDS.get, "10.0.0.1", 101.0)
    assert first.verdict is Verdict.OK
    assert first.identity == "HD0001"
    assert again.verdict is Verdict.CHALLENGE


def test_failures_for_one_user_from_many_sources_block_that_user() -> None:
    auth = _auth(fail_limit=3, fail_window=60, block_seconds=300)
    for i in range(3):
        header = _answer(auth, "HD0001", "nope", 100.0 + i)
        auth.check(_request(header), "Authorization", PASSWORDS.get, f"10.0.0.{i}", 100.0 + i)
    header = _answer(auth, "HD0001", "right", 110.0)
    blocked = auth.check(_request(header), "Authorization", PASSWORDS.get, "10.0.0.99", 110.0)
    assert blocked.verdict is Verdict.FORBIDDEN
    assert auth.stats["auth_blocks"] == 1
    header = _answer(auth, "HD0001", "right", 500.0)
    later = auth.check(_request(header), "Authorization", PASSWORDS.get, "10.0.0.99", 500.0)
    assert later.verdict is Verdict.OK


def test_malformed_digest_is_a_bad_request_and_another_scheme_is_challenged() -> None:
    auth = _auth()
    bad = auth.check(
        _request('Digest username="x", realm="hotdesk"'),
        "Authorization",
        PASSWORDS.get,
        "10.0.0.1",
        1.0,
    )
    other = auth.check(_request("NewAuth realm=x"), "Authorization", PASSWORDS.get, "10.0.0.1", 1.0)
    assert bad.verdict is Verdict.BAD_REQUEST
    assert other.verdict is Verdict.CHALLENGE
