"""Who is calling the admin API: console sessions, API tokens, the first admin. Pure
except :func:`first_admin`, which keeps the generated admin in a KV bucket.

Sessions are signed cookies (HMAC-SHA256 over the payload) that expire; each carries
the CSRF token the browser must echo in ``X-CSRF-Token`` on state-changing requests
(double submit, OWASP CSRF cheat sheet). API tokens are compared by SHA-256 digest in
constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hotdesk_contracts.directory import AdminUser, ApiToken

log = logging.getLogger(__name__)

GENERATED_ADMIN_KEY = "generated-admin"
SESSION_KEY = "session-key"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``admin:<name>`` or ``token:<name>`` as ``actor``."""

    name: str
    role: str
    """``admin`` (may act) or ``viewer`` (reads only)."""
    via: str
    """``session`` or ``token``."""
    csrf: str = ""
    """For sessions: the token state-changing requests must echo."""

    @property
    def actor(self) -> str:
        """The ``cause.actor`` of events this caller causes."""
        return f"admin:{self.name}"

    @property
    def can_act(self) -> bool:
        """Whether the caller may change anything."""
        return self.role == "admin"


class AuthError(Exception):
    """Credentials missing, wrong or expired."""


_hasher = PasswordHasher()
# Verifying against a dummy hash for unknown users keeps the timing of "no such user"
# and "wrong password" alike.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def check_password(admins: list[AdminUser], username: str, password: str) -> Principal:
    """The admin with this username and password, or :class:`AuthError`."""
    admin = next((a for a in admins if a.username == username), None)
    try:
        _hasher.verify(admin.password_hash if admin else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError) as exc:
        raise AuthError("wrong username or password") from exc
    if admin is None:
        raise AuthError("wrong username or password")
    return Principal(name=admin.username, role=admin.role, via="session")


def token_digest(token: str) -> str:
    """SHA-256 hex of an API token, as ``api_tokens[].token_hash`` stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_token(tokens: list[ApiToken], token: str) -> Principal:
    """The API token's principal, or :class:`AuthError`. Every token is compared."""
    digest = token_digest(token)
    found: ApiToken | None = None
    for candidate in tokens:
        if hmac.compare_digest(candidate.token_hash.lower(), digest):
            found = candidate
    if found is None:
        raise AuthError("unknown API token")
    return Principal(name=found.name, role=found.role, via="token")


class _Session(msgspec.Struct, frozen=True):
    u: str
    r: str
    exp: float
    csrf: str


class SessionSigner:
    """Issues and checks signed, expiring session cookie values."""

    def __init__(self, key: bytes, ttl: timedelta = timedelta(hours=8)) -> None:
        self._key = key
        self.ttl = ttl

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def issue(self, principal: Principal, now: datetime) -> tuple[str, str]:
        """A cookie value for ``principal`` and its CSRF token."""
        csrf = secrets.token_urlsafe(24)
        body = msgspec.json.encode(
            _Session(
                u=principal.name, r=principal.role, exp=(now + self.ttl).timestamp(), csrf=csrf
            )
        )
        payload = base64.urlsafe_b64encode(body).rstrip(b"=")
        return f"{payload.decode()}.{self._sign(payload)}", csrf

    def check(self, value: str, now: datetime) -> Principal:
        """The session's principal, or :class:`AuthError` if forged or expired."""
        payload, _, signature = value.partition(".")
        if not hmac.compare_digest(self._sign(payload.encode()), signature):
            raise AuthError("invalid session")
        try:
            padded = payload + "=" * (-len(payload) % 4)
            session = msgspec.json.decode(base64.urlsafe_b64decode(padded), type=_Session)
        except (ValueError, msgspec.DecodeError) as exc:
            raise AuthError("invalid session") from exc
        if session.exp <= now.timestamp():
            raise AuthError("session expired")
        return Principal(name=session.u, role=session.r, via="session", csrf=session.csrf)


async def session_key(kv: KeyValue) -> bytes:
    """The key sessions are signed with, shared by every replica through ``kv``."""
    try:
        entry = await kv.get(SESSION_KEY)
        if entry.value:
            return entry.value
    except KeyNotFoundError:
        pass
    with_key = secrets.token_bytes(32)
    try:
        await kv.create(SESSION_KEY, with_key)
    except KeyWrongLastSequenceError:  # another replica created it first: use theirs
        entry = await kv.get(SESSION_KEY)
        return entry.value or with_key
    return with_key


async def first_admin(
    kv: KeyValue, admins: list[AdminUser], announce: bool = True
) -> AdminUser | None:
    """The generated admin when the directory names none.

    On the very first start a password is generated, printed once on stdout (never
    logged) and only its argon2 hash is kept in ``kv``, so restarts reuse it.
    """
    if admins:
        return None
    try:
        entry = await kv.get(GENERATED_ADMIN_KEY)
        if entry.value:
            return msgspec.json.decode(entry.value, type=AdminUser)
    except KeyNotFoundError:
        pass
    password = secrets.token_urlsafe(15)
    admin = AdminUser(username="admin", password_hash=_hasher.hash(password), role="admin")
    try:
        await kv.create(GENERATED_ADMIN_KEY, msgspec.json.encode(admin))
    except KeyWrongLastSequenceError:  # another replica generated one first
        entry = await kv.get(GENERATED_ADMIN_KEY)
        return msgspec.json.decode(entry.value or b"", type=AdminUser)
    if announce:
        # Shown once to the operator, deliberately not logged.
        print(
            f"hotdesk admin console: user 'admin', password '{password}' (shown only once)",
            flush=True,
        )
    log.info("generated the first admin account", extra={"username": "admin"})
    return admin


class LoginThrottle:
    """Slows password guessing: after ``limit`` failures for a username within
    ``window``, sign-ins for it are refused until the window has passed. Pure: the
    caller passes ``now``; kept in memory per process (a replica restart forgets)."""

    def __init__(self, limit: int = 10, window: timedelta = timedelta(minutes=5)) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[datetime]] = {}

    def _recent(self, username: str, now: datetime) -> list[datetime]:
        recent = [t for t in self._failures.get(username, []) if now - t < self.window]
        if recent:
            self._failures[username] = recent
        else:
            self._failures.pop(username, None)
        return recent

    def blocked_until(self, username: str, now: datetime) -> datetime | None:
        """When sign-ins for ``username`` are allowed again, or ``None`` if they are."""
        recent = self._recent(username, now)
        if len(recent) < self.limit:
            return None
        return recent[-self.limit] + self.window

    def failed(self, username: str, now: datetime) -> None:
        """Record a failed sign-in."""
        recent = self._recent(username, now)
        recent.append(now)
        self._failures[username] = recent

    def succeeded(self, username: str) -> None:
        """Forget the failures after a good sign-in."""
        self._failures.pop(username, None)
