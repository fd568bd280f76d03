"""PIN hashes: how ``hotdesk hash-pin`` makes them and how the IVR checks them.

A voicemail PIN has 10^4 to 10^8 values. Whatever an argon2 hash costs, whoever holds a
copy of the directory tries them all offline: at the 190 ms of argon2-cffi's default
parameters a 4-digit PIN falls in half an hour on one core, at 2 ms in 20 seconds. A
slow hash therefore buys PINs almost nothing, and it costs every login that much CPU.

What protects PINs is:

- the online lockout (``policies.pin_max_failures`` across calls and desks), and
- a **pepper**: a secret key (``pins.pepper``, best given by the environment variable
  ``HOTDESK_PINS__PEPPER``) kept outside the directory. The PIN is run through
  HMAC-SHA256 under that key before argon2, so a stolen directory alone (a config file,
  a backup, the directory bucket) gives nothing to search: without the key no PIN can
  be tested against a hash at all.

With the pepper in place the argon2 work factor only has to stop a thief who has both
the directory and the key, and no work factor stops that for a 4-digit PIN. PIN hashes
are made with :data:`PIN_PARAMETERS` (argon2id, 4 MiB, one pass: about 2 ms), so the
IVR checks 50 PINs a second in a tenth of a core. Admin passwords are real passwords
and keep argon2-cffi's defaults (:func:`hotdesk_runtime.config.hash_secret`).

A peppered hash names the key it was made with by a fingerprint (the first 8 hex
digits of an HMAC of a fixed label under the key, which tells nothing about the key):
``peppered:<fingerprint>:$argon2id$v=19$m=4096,t=1,p=1$<salt>$<hash>``. A plain
argon2 hash (as older hotdesk releases made, whatever its parameters) keeps verifying
against the PIN itself. A peppered hash checked without its key raises
:class:`PepperMismatch` rather than counting as a wrong PIN, so a missing or rotated
key never locks users out.
"""

from __future__ import annotations

import hashlib
import hmac

import argon2

PEPPERED_PREFIX = "peppered:"
FINGERPRINT_LENGTH = 8
_FINGERPRINT_LABEL = b"hotdesk PIN pepper fingerprint v1"

PIN_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=4096,
    parallelism=1,
)
"""argon2id with 4 MiB and one pass (RFC 9106 §4 favours one pass over more memory):
about 2 ms of CPU per check on a 2020s core."""

_pin_hasher = argon2.PasswordHasher.from_parameters(PIN_PARAMETERS)
_any_hasher = argon2.PasswordHasher()
"""Verifies any argon2 hash: ``verify`` reads the parameters from the hash itself."""

MIN_PEPPER_LENGTH = 16


class PepperMismatch(ValueError):
    """A peppered PIN hash cannot be checked with the pepper configured (none, or
    another key): the hash or ``pins.pepper`` must be fixed, it is not a wrong PIN."""


def fingerprint(pepper: str) -> str:
    """The public name of ``pepper`` as peppered hashes carry it."""
    digest = hmac.new(pepper.encode(), _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()
    return digest[:FINGERPRINT_LENGTH]


def _peppered(pin: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), pin.encode(), hashlib.sha256).hexdigest()


def pepper_problem(pepper: str) -> str | None:
    """Why ``pepper`` is unfit as a key (``None``: fit, or empty = no pepper)."""
    if pepper and len(pepper) < MIN_PEPPER_LENGTH:
        return (
            f"a pepper of {len(pepper)} characters is guessable; use at least "
            f"{MIN_PEPPER_LENGTH} random ones (e.g. `openssl rand -hex 32`)"
        )
    return None


def hash_pin(pin: str, pepper: str = "") -> str:
    """The hash of ``pin`` for ``extensions[].pin_hash``: peppered when ``pepper`` is
    given, argon2id with :data:`PIN_PARAMETERS` either way."""
    if not pin:
        raise ValueError("cannot hash an empty PIN")
    problem = pepper_problem(pepper)
    if problem:
        raise ValueError(problem)
    if not pepper:
        return _pin_hasher.hash(pin)
    return f"{PEPPERED_PREFIX}{fingerprint(pepper)}:{_pin_hasher.hash(_peppered(pin, pepper))}"


def split_pin_hash(value: str) -> tuple[str | None, str]:
    """``(fingerprint or None, argon2 hash)`` of a stored PIN hash (not validated)."""
    if not value.startswith(PEPPERED_PREFIX):
        return None, value
    fp, sep, encoded = value[len(PEPPERED_PREFIX) :].partition(":")
    return (fp if sep else ""), encoded


def is_pin_hash(value: str) -> bool:
    """Whether ``value`` is a PIN hash: argon2, peppered or not."""
    fp, encoded = split_pin_hash(value)
    if fp is not None and len(fp) != FINGERPRINT_LENGTH:
        return False
    try:
        argon2.extract_parameters(encoded)
    except (argon2.exceptions.InvalidHashError, ValueError):
        return False
    return True


def verify_pin_hash(pin_hash: str, pin: str, pepper: str = "") -> bool:
    """Whether ``pin`` matches ``pin_hash`` (slow on purpose: call it off the event loop).

    A malformed hash is never matched. Raises :class:`PepperMismatch` when
    ``pin_hash`` was peppered with another key than ``pepper`` (or ``pepper`` is empty).
    """
    fp, encoded = split_pin_hash(pin_hash)
    secret = pin
    if fp is not None:
        if not pepper:
            raise PepperMismatch("the PIN hash is peppered but no pins.pepper is configured")
        if not hmac.compare_digest(fp, fingerprint(pepper)):
            raise PepperMismatch(
                f"the PIN hash was made with pepper {fp}, the configured one is "
                f"{fingerprint(pepper)}"
            )
        secret = _peppered(pin, pepper)
    try:
        return _any_hasher.verify(encoded, secret)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False
