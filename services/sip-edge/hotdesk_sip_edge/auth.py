"""Digest authentication of requests, with the abuse rules the edge needs.

:class:`Authenticator` is pure (the caller passes ``now``): it challenges, verifies and
remembers failures. An unknown user takes exactly the same path as a known user with a
wrong password — a digest is computed against a dummy secret and the same 401 and 403
come back — so responses never tell which user names exist.

A challenge offers every configured algorithm, one ``WWW-Authenticate`` (or
``Proxy-Authenticate``) value each, the preferred first (RFC 8760 §2.4); a client
answers the first it supports. Each carries a nonce of its own. Nonces do not name an
algorithm, so a client that takes the first challenge but can only hash MD5 still
succeeds while MD5 is offered at all.
"""

from __future__ import annotations

import enum
import itertools
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .sip.digest import (
    ALGORITHMS,
    DigestError,
    NonceCounts,
    NonceState,
    challenge,
    check_nonce,
    make_nonce,
    parse_authorization,
    verify,
)
from .sip.message import SipRequest

log = logging.getLogger("hotdesk.sip_edge.auth")

PasswordLookup = Callable[[str], str | None]
"""Returns the SIP password of a user name (``HD0001``, ``101``), None if unknown."""


class Verdict(enum.Enum):
    """What to do with a request after authentication."""

    OK = "ok"
    CHALLENGE = "challenge"
    """Answer 401/407 with ``challenge`` (no credentials, stale or foreign nonce)."""
    FORBIDDEN = "forbidden"
    """Answer 403: wrong credentials, unknown user, or a blocked source or user."""
    BAD_REQUEST = "bad-request"
    """Answer 400: the credentials header is malformed."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of :meth:`Authenticator.check`."""

    verdict: Verdict
    identity: str = ""
    challenges: tuple[str, ...] = ()
    """For CHALLENGE: one header value per offered algorithm, the preferred first."""
    detail: str = ""

    @property
    def challenge(self) -> str:
        """The preferred challenge alone (for callers that send one)."""
        return self.challenges[0] if self.challenges else ""


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


class Authenticator:
    """Challenges and verifies digest credentials for one realm."""

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_lifetime: float = 300.0,
        fail_limit: int = 10,
        fail_window: float = 60.0,
        block_seconds: float = 300.0,
        algorithms: Sequence[str] = ("MD5",),
    ) -> None:
        self.realm = realm
        self._secret = secret
        self._previous: bytes | None = None
        self.nonce_lifetime = nonce_lifetime
        self.fail_limit = fail_limit
        self.fail_window = fail_window
        self.block_seconds = block_seconds
        offered = tuple(algorithms)
        if not offered or any(a not in ALGORITHMS or a.endswith("-sess") for a in offered):
            raise ValueError(f"digest algorithms must be some of MD5, SHA-256: {offered!r}")
        if len(set(offered)) != len(offered):
            raise ValueError(f"a digest algorithm is listed twice: {offered!r}")
        self.algorithms = offered
        """Offered in this order (RFC 8760 §2.4: the preferred first)."""
        self._counts = NonceCounts()
        # Nonce salts: a random prefix per authenticator (replicas differ) and a
        # counter, so every challenge is unique without a call to the OS's random
        # source per challenge.
        self._salt_prefix = secrets.token_hex(3)
        self._salts = itertools.count(1)
        self._failures: dict[str, _Failures] = {}
        self._dummy = secrets.token_hex(16)
        self.stats: Counter[str] = Counter()

    def rotate(self, secret: bytes) -> None:
        """Issue nonces with ``secret`` from now on; nonces of the previous secret stay
        valid for their lifetime (the directory, which the secret derives from, was
        reloaded)."""
        if secret != self._secret:
            self._previous, self._secret = self._secret, secret

    def _challenge(self, now: float, *, stale: bool = False) -> AuthResult:
        return AuthResult(
            Verdict.CHALLENGE,
            challenges=tuple(
                challenge(self.realm, self._nonce(now), algorithm, stale=stale)
                for algorithm in self.algorithms
            ),
        )

    def _nonce(self, now: float) -> str:
        salt = f"{self._salt_prefix}{next(self._salts) & 0xFFFFFFFFFF:x}"
        return make_nonce(self._secret, now, salt)

    def blocked(self, key: str, now: float) -> bool:
        """Whether ``key`` (``src:<host>`` or ``user:<name>``) is blocked at ``now``."""
        entry = self._failures.get(key)
        return entry is not None and entry.blocked_until > now

    def _fail(self, key: str, now: float) -> None:
        entry = self._failures.setdefault(key, _Failures())
        entry.times.append(now)
        while entry.times and entry.times[0] <= now - self.fail_window:
            entry.times.popleft()
        if len(entry.times) >= self.fail_limit and entry.blocked_until <= now:
            entry.blocked_until = now + self.block_seconds
            entry.times.clear()
            self.stats["auth_blocks"] += 1
            log.warning(
                "authentication blocked after repeated failures",
                extra={"key": key, "failures": self.fail_limit, "seconds": self.block_seconds},
            )
        if len(self._failures) > 100_000:
            self._failures = {k: v for k, v in self._failures.items() if v.blocked_until > now}

    def check(
        self,
        request: SipRequest,
        header: str,
        passwords: PasswordLookup,
        source_host: str,
        now: float,
    ) -> AuthResult:
        """Authenticate ``request`` by its ``header`` (``Authorization`` for REGISTER,
        ``Proxy-Authorization`` for requests to the proxy)."""
        source_key = f"src:{source_host}"
        if self.blocked(source_key, now):
            self.stats["auth_refused_blocked"] += 1
            return AuthResult(Verdict.FORBIDDEN, detail="source blocked")
        creds = None
        for value in request.headers.get_all(header):
            try:
                candidate = parse_authorization(value)
            except DigestError as exc:
                if value.strip().lower().startswith("digest"):
                    return AuthResult(Verdict.BAD_REQUEST, detail=str(exc))
                continue  # another scheme (RFC 4475 §3.3.7): challenge in ours
            if candidate.realm == self.realm:
                creds = candidate
                break
        if creds is None or creds.algorithm.removesuffix("-sess") not in self.algorithms:
            # No credentials for us, or made with an algorithm not offered (MD5 when only
            # SHA-256 is): challenge with what is.
            return self._challenge(now)
        state = check_nonce(self._secret, creds.nonce, now, self.nonce_lifetime)
        if state is NonceState.INVALID and self._previous is not None:
            state = check_nonce(self._previous, creds.nonce, now, self.nonce_lifetime)
        if state is NonceState.INVALID:
            return self._challenge(now)
        if state is NonceState.STALE:
            return self._challenge(now, stale=True)
        user_key = f"user:{creds.username}"
        if self.blocked(user_key, now):
            self.stats["auth_refused_blocked"] += 1
            return AuthResult(Verdict.FORBIDDEN, detail="user blocked")
        password = passwords(creds.username)
        # Same work for an unknown user as for a known one: no enumeration by timing.
        good = verify(creds, request.method, password if password is not None else self._dummy)
        if good and password is not None:
            if not self._counts.accept(creds.nonce, creds.nc):
                # RFC 7616 §3.4: a repeated nonce-count is a replay; ask again.
                self.stats["auth_replays"] += 1
                return self._challenge(now, stale=True)
            self.stats["auth_ok"] += 1
            return AuthResult(Verdict.OK, identity=creds.username)
        self.stats["auth_failures"] += 1
        self._fail(source_key, now)
        self._fail(user_key, now)
        return AuthResult(Verdict.FORBIDDEN, detail="bad credentials")
