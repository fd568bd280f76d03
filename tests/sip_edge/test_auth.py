"""Authentication rules: no user enumeration, stale nonces, replays, blocks."""

from __future__ import annotations

import pytest

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


def _answer(
    auth: Authenticator,
    user: str,
    password: str,
    now: float,
    nc: int = 1,
    algorithm: str = "MD5",
    challenge_index: int = 0,
) -> str:
    """Credentials answering the challenge at ``challenge_index`` with ``algorithm``."""
    challenge = auth.check(_request(), "Authorization", PASSWORDS.get, "10.0.0.1", now)
    _, params = parse_auth(challenge.challenges[challenge_index])
    creds = DigestResponse(
        user,
        params["realm"],
        params["nonce"],
        "sip:127.0.0.1",
        "",
        algorithm,
        "auth",
        f"{nc:08x}",
        "cn",
    )
    digest = expected_response(creds, "REGISTER", password)
    return (
        f'Digest username="{user}", realm="{creds.realm}", nonce="{creds.nonce}", '
        f'uri="sip:127.0.0.1", response="{digest}", algorithm={algorithm}, qop=auth, '
        f'nc={nc:08x}, cnonce="cn"'
    )


def _auth(**kwargs: object) -> Authenticator:
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


def test_one_challenge_per_offered_algorithm_in_preference_order_each_with_its_own_nonce() -> None:
    auth = _auth(algorithms=("SHA-256", "MD5"))
    result = auth.check(_request(), "Authorization", PASSWORDS.get, "10.0.0.1", 100.0)
    assert result.verdict is Verdict.CHALLENGE
    params = [parse_auth(value)[1] for value in result.challenges]
    assert [p["algorithm"] for p in params] == ["SHA-256", "MD5"]
    assert all(p["realm"] == "hotdesk" and p["qop"] == "auth" for p in params)
    assert params[0]["nonce"] != params[1]["nonce"]
    assert result.challenge == result.challenges[0]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_either_offered_algorithm_authenticates(algorithm: str) -> None:
    auth = _auth(algorithms=("SHA-256", "MD5"))
    index = ["SHA-256", "MD5"].index(algorithm)
    header = _answer(auth, "HD0001", "right", 100.0, algorithm=algorithm, challenge_index=index)
    result = auth.check(_request(header), "Authorization", PASSWORDS.get, "10.0.0.1", 100.0)
    assert (result.verdict, result.identity) == (Verdict.OK, "HD0001")


def test_a_client_that_hashes_md5_with_the_first_challenges_nonce_still_succeeds() -> None:
    # Clients that only read the first challenge and only know MD5 answer the SHA-256
    # challenge's nonce with an MD5 digest: nonces name no algorithm, MD5 is offered.
    auth = _auth(algorithms=("SHA-256", "MD5"))
    header = _answer(auth, "HD0001", "right", 100.0, algorithm="MD5", challenge_index=0)
    result = auth.check(_request(header), "Authorization", PASSWORDS.get, "10.0.0.1", 100.0)
    assert result.verdict is Verdict.OK


def test_an_algorithm_that_is_not_offered_is_challenged_again_not_verified() -> None:
    auth = _auth(algorithms=("SHA-256",))
    header = _answer(auth, "HD0001", "right", 100.0, algorithm="MD5")
    result = auth.check(_request(header), "Authorization", PASSWORDS.get, "10.0.0.1", 100.0)
    assert result.verdict is Verdict.CHALLENGE
    assert [parse_auth(v)[1]["algorithm"] for v in result.challenges] == ["SHA-256"]
    assert auth.stats["auth_failures"] == 0


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_unknown_user_and_wrong_password_are_alike_under_each_algorithm(algorithm: str) -> None:
    auth = _auth(algorithms=("SHA-256", "MD5"))
    index = ["SHA-256", "MD5"].index(algorithm)
    verdicts = [
        auth.check(
            _request(
                _answer(auth, user, "nope", 100.0, algorithm=algorithm, challenge_index=index)
            ),
            "Authorization",
            PASSWORDS.get,
            "10.0.0.1",
            100.0,
        )
        for user in ("HD0001", "HD9999")
    ]
    assert verdicts[0] == verdicts[1]
    assert verdicts[0].verdict is Verdict.FORBIDDEN


@pytest.mark.parametrize("algorithms", [(), ("SHA-512",), ("MD5", "MD5"), ("MD5-sess",)], ids=repr)
def test_unusable_algorithm_lists_are_refused_at_construction(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        _auth(algorithms=algorithms)
