"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).

Nonces are stateless: ``<timestamp>.<salt>.<HMAC(secret, timestamp.salt)>``, so any edge replica
sharing the secret can verify a nonce another one issued, and a nonce older than its
lifetime is answered with ``stale=true`` (RFC 7616 §3.3) so the phone retries with the
fresh nonce without asking its user for a password.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .headers import HeaderError, parse_auth, quote

ALGORITHMS = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess")
_CANONICAL_ALGORITHMS = {a.upper(): a for a in ALGORITHMS}
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")


class DigestError(ValueError):
    """The Authorization header is not a usable digest response."""


class NonceState(enum.Enum):
    """What a received nonce turned out to be."""

    VALID = "valid"
    STALE = "stale"
    """Issued by us but older than the lifetime: challenge again with ``stale=true``."""
    INVALID = "invalid"
    """Not issued by us (or tampered with)."""


def _mac(secret: bytes, stamp: str) -> str:
    digest = hmac.digest(secret, stamp.encode("ascii"), "sha256")[:18]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def make_nonce(secret: bytes, now: float, salt: str | None = None) -> str:
    """A nonce for time ``now`` (seconds since the epoch). The random salt makes every
    challenge unique, so nonce-counts of two challenges in one second never collide."""
    stamp = format(int(now), "x")
    salt = secrets.token_hex(4) if salt is None else salt
    return f"{stamp}.{salt}.{_mac(secret, f'{stamp}.{salt}')}"


def check_nonce(secret: bytes, nonce: str, now: float, lifetime: float) -> NonceState:
    """Whether ``nonce`` was issued with ``secret`` and is younger than ``lifetime``."""
    parts = nonce.split(".")
    if len(parts) != 3 or not parts[0] or len(parts[0]) > 12 or len(parts[1]) > 16:
        return NonceState.INVALID
    stamp, salt, mac = parts
    try:
        issued = int(stamp, 16)
    except ValueError:
        return NonceState.INVALID
    expected = _mac(secret, f"{stamp}.{salt}").encode()
    if not hmac.compare_digest(mac.encode("ascii", "replace"), expected):
        return NonceState.INVALID
    if issued > now + 5 or now - issued > lifetime:
        return NonceState.STALE
    return NonceState.VALID


def challenge(realm: str, nonce: str, algorithm: str = "MD5", *, stale: bool = False) -> str:
    """A ``WWW-Authenticate``/``Proxy-Authenticate`` value offering qop=auth."""
    value = f'Digest realm={quote(realm)}, nonce={quote(nonce)}, algorithm={algorithm}, qop="auth"'
    return value + (", stale=true" if stale else "")


@dataclass(frozen=True, slots=True)
class DigestResponse:
    """The parameters of an ``Authorization``/``Proxy-Authorization`` digest."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None


def parse_authorization(value: str) -> DigestResponse:
    """Parse a digest credentials header value; :class:`DigestError` if unusable
    (another scheme, a missing parameter, an unknown algorithm or qop)."""
    try:
        scheme, params = parse_auth(value)
    except HeaderError as exc:
        raise DigestError(str(exc)) from exc
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported authentication scheme {scheme[:20]!r}")
    for name in ("username", "realm", "nonce", "uri", "response"):
        if name not in params:
            raise DigestError(f"digest parameter {name!r} missing")
    algorithm = params.get("algorithm", "MD5")
    canonical = _CANONICAL_ALGORITHMS.get(algorithm.upper())
    if canonical is None:
        raise DigestError(f"unsupported digest algorithm {algorithm[:20]!r}")
    qop = params.get("qop")
    if qop is not None:
        if qop.lower() != "auth":
            raise DigestError(f"unsupported qop {qop[:20]!r}")
        nc = params.get("nc", "")
        if not _NC_RE.fullmatch(nc):
            raise DigestError("qop=auth needs an 8-digit hex nc")
        if not params.get("cnonce"):
            raise DigestError("qop=auth needs a cnonce")
    return DigestResponse(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=canonical,
        qop=qop.lower() if qop else None,
        nc=params.get("nc"),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
    )


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hasher(algorithm: str) -> Callable[[bytes], str]:
    return _sha256 if algorithm.upper().startswith("SHA-256") else _md5


def expected_response(creds: DigestResponse, method: str, password: str) -> str:
    """The ``response`` value a client knowing ``password`` would send (RFC 7616 §3.4.1).

    ``uri`` is taken from the credentials as sent: SIPp puts the server address there
    rather than the Request-URI, and Kamailio and Asterisk accept that too.
    """
    algo = creds.algorithm
    h = _hasher(algo)
    # surrogateescape: a value that is not UTF-8 is hashed as the bytes that were sent.
    ha1 = h(f"{creds.username}:{creds.realm}:{password}".encode("utf-8", "surrogateescape"))
    if algo.lower().endswith("-sess"):
        ha1 = h(f"{ha1}:{creds.nonce}:{creds.cnonce or ''}".encode("utf-8", "surrogateescape"))
    ha2 = h(f"{method}:{creds.uri}".encode("utf-8", "surrogateescape"))
    if creds.qop == "auth":
        text = f"{ha1}:{creds.nonce}:{creds.nc}:{creds.cnonce}:{creds.qop}:{ha2}"
    else:
        text = f"{ha1}:{creds.nonce}:{ha2}"
    return h(text.encode("utf-8", "surrogateescape"))


def verify(creds: DigestResponse, method: str, password: str) -> bool:
    """Whether ``creds`` prove knowledge of ``password``; constant-time compare."""
    expected = expected_response(creds, method, password)
    return hmac.compare_digest(expected.encode(), creds.response.lower().encode("utf-8", "replace"))


class NonceCounts:
    """Highest nonce-count seen per nonce, to refuse replays (RFC 7616 §3.4).

    Bounded: the oldest nonces are forgotten first, which is safe because they
    also expire. Local to one edge replica; a replayed nc at another replica is
    still limited by the nonce lifetime.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def accept(self, nonce: str, nc: str | None) -> bool:
        """Record ``nc`` for ``nonce``; False when it is not above the last one seen."""
        count = int(nc, 16) if nc else 0
        last = self._seen.get(nonce)
        if last is not None and count <= last:
            return False
        self._seen[nonce] = count
        self._seen.move_to_end(nonce)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
