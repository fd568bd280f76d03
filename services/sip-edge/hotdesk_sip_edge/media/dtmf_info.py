"""DTMF carried in SIP INFO requests (RFC 6086 INFO with the bodies phones use).

Two body formats exist in the wild, neither standardised in an RFC:
``application/dtmf-relay`` (``Signal=5\\r\\nDuration=160``, Cisco's format, sent by
Yealink, Polycom, snom, Grandstream) and ``application/dtmf`` (the bare digit).
"""

from __future__ import annotations

from .rfc4733 import EVENT_DIGITS

DTMF_RELAY = "application/dtmf-relay"
DTMF = "application/dtmf"


class DtmfInfoError(ValueError):
    """An INFO body that carries no DTMF digit we understand."""


def _digit(value: str) -> str:
    value = value.strip()
    if len(value) == 1 and value.upper() in EVENT_DIGITS:
        return value.upper()
    # Some phones send the RFC 4733 event code instead of the digit (10 for *, 11 for #).
    if value.isdigit() and 10 <= int(value) < len(EVENT_DIGITS):
        return EVENT_DIGITS[int(value)]
    raise DtmfInfoError(f"{value!r} is not a DTMF digit")


def parse(content_type: str, body: bytes) -> str:
    """The digit in an INFO body of ``content_type`` (parameters ignored).

    Raises :class:`DtmfInfoError` for another content type or a body without a digit.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", errors="replace")
    if media_type == DTMF:
        return _digit(text)
    if media_type == DTMF_RELAY:
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip().lower() == "signal":
                return _digit(value)
        raise DtmfInfoError("application/dtmf-relay body has no Signal= line")
    raise DtmfInfoError(f"INFO content type {media_type!r} carries no DTMF")


def serialize_relay(digit: str, duration_ms: int = 160) -> bytes:
    """An ``application/dtmf-relay`` body."""
    return f"Signal={_digit(digit)}\r\nDuration={duration_ms}\r\n".encode()


def serialize_dtmf(digit: str) -> bytes:
    """An ``application/dtmf`` body."""
    return _digit(digit).encode()
