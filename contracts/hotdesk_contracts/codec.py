"""Encoding and decoding of ledger events, with upcasting of old versions.

The fast path decodes straight into the tagged union. When an event type has had a
breaking change, its old versions are registered in :data:`UPCASTERS`: the raw JSON is
then decoded to a dict, upcast step by step to the current version, and converted.

Either way an event whose ``version`` is newer than the one this build knows is refused
with :class:`EventDecodeError`: decoding it as the old version would silently misread
it (a field whose meaning changed), so callers skip it and say so instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .events import ALL_EVENTS, LedgerEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""(type tag, old version) -> function that returns the next version's dict."""

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[LedgerEvent] = msgspec.json.Decoder(LedgerEvent)
_raw_decoder = msgspec.json.Decoder(dict[str, Any])

KNOWN_VERSIONS: dict[type[Any], int] = {
    cls: next(f.default for f in msgspec.structs.fields(cls) if f.name == "version")
    for cls in ALL_EVENTS
}
"""Event class -> the newest schema version this build understands."""


class EventDecodeError(ValueError):
    """Bytes that are not a ledger event this version of hotdesk understands."""


def encode_event(event: LedgerEvent) -> bytes:
    """Serialize an event to the JSON bytes stored in the ledger."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> LedgerEvent:
    """Decode ledger bytes into the current version of the event."""
    event: LedgerEvent
    try:
        if UPCASTERS:
            event = msgspec.convert(upcast(_raw_decoder.decode(data)), LedgerEvent)
        else:
            event = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EventDecodeError(f"not a ledger event: {exc}") from exc
    known = KNOWN_VERSIONS[type(event)]
    if event.version > known:
        raise EventDecodeError(
            f"{type(event).__name__} version {event.version} is newer than this build"
            f" understands (version {known})"
        )
    return event


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Apply registered upcasters until the dict is at its current version."""
    while (step := UPCASTERS.get((str(raw.get("type")), int(raw.get("version", 1))))) is not None:
        raw = step(raw)
    return raw
