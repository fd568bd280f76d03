"""HTTP authentication for phones: Digest (RFC 7616, MD5 with qop=auth, which is what
desk phones implement) and Basic (RFC 7617). Pure: the clock and the nonce key are
passed in.

Nonces are stateless (RFC 7616 §5.4 suggests a timestamp plus a keyed hash): any
replica holding the same key can check them, and an expired one is answered with
``stale=true`` so the phone retries without asking for a password again. Nonce
counts, which need state, are kept by the caller (see ``nonces``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

REALM = "hotdesk-provisioning"

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)\s*,?')


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request's ``Authorization`` header claims."""

    scheme: str
    """``digest`` or ``basic``."""
    username: str
    params: dict[str, str]
    """Digest parameters; for Basic, ``password``."""


class AuthHeaderError(ValueError):
    """An ``Authorization`` header that cannot be parsed."""


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def make_nonce(key: bytes, now: float, salt: str | None = None) -> str:
    """A nonce carrying its issue time and a random salt, signed with ``key``.

    The salt makes every challenge's nonce unique, so that nonce counts (RFC 7616
    §3.4) tell one client's requests from another's even within the same second.
    """
    stamp = f"{int(now)}.{salt if salt is not None else secrets.token_hex(8)}"
    mac = hmac.new(key, stamp.encode(), hashlib.sha256).hexdigest()[:32]
    return base64.b64encode(f"{stamp}:{mac}".encode()).decode()


def nonce_age(key: bytes, nonce: str, now: float) -> float | None:
    """Seconds since the nonce was issued, ``None`` when it is not one of ours."""
    try:
        stamp, mac = base64.b64decode(nonce, validate=True).decode().split(":", 1)
        issued = int(stamp.split(".", 1)[0])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    good = hmac.new(key, stamp.encode(), hashlib.sha256).hexdigest()[:32]
    if not hmac.compare_digest(good, mac):
        return None
    return now - issued


def challenge(scheme: str, key: bytes, now: float, *, stale: bool = False) -> str:
    """The ``WWW-Authenticate`` value for a 401 (RFC 7616 §3.3, RFC 7617 §2)."""
    if scheme == "basic":
        return f'Basic realm="{REALM}", charset="UTF-8"'
    value = (
        f'Digest realm="{REALM}", qop="auth", algorithm=MD5, '
        f'nonce="{make_nonce(key, now)}", opaque="{REALM}"'
    )
    return value + (", stale=true" if stale else "")


def parse_authorization(header: str) -> Credentials:
    """Parse a Digest or Basic ``Authorization`` header."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            user, sep, password = (
                base64.b64decode(rest.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthHeaderError("Basic credentials are not base64 of user:password") from exc
        if not sep:
            raise AuthHeaderError("Basic credentials lack the ':' between user and password")
        return Credentials("basic", user, {"password": password})
    if scheme == "digest":
        params: dict[str, str] = {}
        for match in _PARAM.finditer(rest):
            quoted = match.group(3)
            params[match.group(1).lower()] = (
                re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(2)
            )
        for needed in ("username", "realm", "nonce", "uri", "response"):
            if needed not in params:
                raise AuthHeaderError(f"Digest credentials lack {needed!r}")
        return Credentials("digest", params["username"], params)
    raise AuthHeaderError(f"unsupported authorization scheme {scheme!r}")


class Verdict(enum.Enum):
    """Outcome of a credentials check."""

    OK = "ok"
    BAD = "bad"
    """Wrong user, password, realm or URI, or a nonce that is not ours."""
    STALE = "stale"
    """Right answer to a nonce that expired: challenge again with ``stale=true``."""


def verify(
    creds: Credentials,
    password: str,
    method: str,
    uri: str,
    key: bytes,
    now: float,
    nonce_lifetime: float,
    *,
    allow_legacy: bool = False,
) -> Verdict:
    """Check credentials against ``password`` (constant time on the secret part).

    For Digest: the realm must be ours, the ``uri`` the one requested (RFC 7616
    §3.4.6), the nonce ours and younger than ``nonce_lifetime`` (else ``stale``
    when the response is otherwise right). An answer without ``qop`` (RFC 2069) is
    refused unless ``allow_legacy``: it carries no nonce count, so a captured request
    could be replayed for the nonce's whole lifetime (RFC 7616 §5.12).
    """
    if creds.scheme == "basic":
        good = hmac.compare_digest(creds.params["password"].encode(), password.encode())
        return Verdict.OK if good else Verdict.BAD
    p = creds.params
    ha1 = _md5(f"{creds.username}:{p['realm']}:{password}")
    ha2 = _md5(f"{method}:{p['uri']}")
    if p.get("qop"):
        if p["qop"] != "auth" or "nc" not in p or "cnonce" not in p:
            return Verdict.BAD
        expected = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
    elif allow_legacy:  # RFC 2069 compatibility: older firmware answers without qop.
        expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
    else:
        return Verdict.BAD
    right = hmac.compare_digest(expected, p["response"].lower())
    if not right or p["realm"] != REALM or p["uri"].split("?", 1)[0] != uri.split("?", 1)[0]:
        return Verdict.BAD
    age = nonce_age(key, p["nonce"], now)
    if age is None or age < -5:
        return Verdict.BAD
    return Verdict.STALE if age > nonce_lifetime else Verdict.OK


def digest_response(
    username: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    realm: str = REALM,
) -> str:
    """The client side of a Digest MD5 qop=auth exchange (RFC 7616 §3.4.1)."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
