"""DTMF as RTP telephone events (RFC 4733 §2.3) and a detector that turns a stream of
event packets into digits, each exactly once.

RFC 4733 makes a sender repeat itself: one key press is a run of packets that share
one RTP timestamp (§2.3.5, the event's start), the first with the marker bit (§2.3.1),
each with a growing duration, and the last with the E bit, sent three times (§2.5.1.4).
Packets get lost and reordered, so the detector keys an event by its timestamp rather
than by the marker or the E bit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .rtp import RtpPacket

EVENT_DIGITS = "0123456789*#ABCD"
"""Event codes 0-15 (RFC 4733 §3.2, Table 7): the sixteen DTMF digits."""
_PAYLOAD = struct.Struct("!BBH")


class TelephoneEventError(ValueError):
    """A telephone-event payload that cannot be parsed."""


@dataclass(frozen=True)
class TelephoneEvent:
    """The 4-byte telephone-event payload (RFC 4733 §2.3, Figure 1)."""

    event: int
    end: bool
    volume: int
    """Power level in -dBm0, 0-63 (§2.3.4)."""
    duration: int
    """In timestamp units since the event's start (§2.3.5)."""

    @property
    def digit(self) -> str | None:
        """The DTMF digit, or ``None`` for a non-DTMF event (e.g. 16, flash)."""
        return EVENT_DIGITS[self.event] if self.event < len(EVENT_DIGITS) else None


def parse(payload: bytes) -> TelephoneEvent:
    """Parse the first event of a telephone-event payload."""
    if len(payload) < _PAYLOAD.size:
        raise TelephoneEventError(
            f"telephone-event payload of {len(payload)} bytes, expected at least 4"
        )
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    # Byte 1: E bit, R bit (reserved, ignored by receivers: §2.3.3), 6-bit volume.
    return TelephoneEvent(
        event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration
    )


def serialize(event: TelephoneEvent) -> bytes:
    """The 4-byte payload of ``event``."""
    if not 0 <= event.event <= 255:
        raise TelephoneEventError(f"event code {event.event} is not 0-255")
    if not 0 <= event.volume <= 63:
        raise TelephoneEventError(f"volume {event.volume} is not 0-63")
    if not 0 <= event.duration <= 0xFFFF:
        raise TelephoneEventError(f"duration {event.duration} is not 0-65535")
    return _PAYLOAD.pack(event.event, (0x80 if event.end else 0) | event.volume, event.duration)


def digit_event(digit: str) -> int:
    """The event code of a DTMF digit (``0-9``, ``*``, ``#``, ``A-D``)."""
    index = EVENT_DIGITS.find(digit.upper())
    if len(digit) != 1 or index < 0:
        raise TelephoneEventError(f"{digit!r} is not a DTMF digit")
    return index


def _newer(timestamp: int, than: int) -> bool:
    # RTP timestamps wrap at 2**32: compare in serial-number arithmetic (RFC 1982).
    return 0 < (timestamp - than) & 0xFFFFFFFF < 0x80000000


class DtmfDetector:
    """Feed it the telephone-event packets of one RTP stream; it returns each digit once.

    An event is reported at the first of its packets that arrives, whichever that is:
    the marked start packet, an update, or one of the end packets when everything
    before them was lost. Packets of an event already reported, and late packets of an
    event older than the newest one seen, are ignored, so repeated end packets (§2.5.1.4)
    and reordering never count a digit twice. A new SSRC starts afresh (§2.5.1.2 allows
    a sender to change it between events).
    """

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self._ssrc: int | None = None
        self._timestamp: int | None = None
        self._event: int | None = None
        self._ended = True

    def feed(self, packet: RtpPacket) -> str | None:
        """The digit ``packet`` reveals for the first time, else ``None``."""
        if packet.payload_type != self.payload_type:
            return None
        try:
            event = parse(packet.payload)
        except TelephoneEventError:
            return None
        if packet.ssrc != self._ssrc:
            self._ssrc, self._timestamp, self._event, self._ended = packet.ssrc, None, None, True
        if self._timestamp is not None:
            if packet.timestamp == self._timestamp:
                self._ended = self._ended or event.end
                return None
            if not _newer(packet.timestamp, self._timestamp):
                return None  # a late packet of an older event
            if not packet.marker and not self._ended and event.event == self._event:
                # §2.5.1.3: an event too long for a 16-bit duration continues under a
                # new timestamp without the marker bit: the same key press.
                self._timestamp, self._ended = packet.timestamp, event.end
                return None
        self._timestamp, self._event, self._ended = packet.timestamp, event.event, event.end
        return event.digit
