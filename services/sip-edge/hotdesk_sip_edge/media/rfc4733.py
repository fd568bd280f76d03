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


REPLAY_GAP_SECONDS = 0.25
"""A marked start packet of an event that ended this long ago is a new key press."""
_REMEMBERED_EVENTS = 32


@dataclass
class _Seen:
    event: int
    ended: bool
    last_packet_at: float


class DtmfDetector:
    """Feed it the telephone-event packets of one RTP stream; it returns each digit once.

    An event is known by its SSRC and timestamp (§2.3.5 keeps the timestamp fixed for
    the whole event). It is reported at the first of its packets that arrives, whichever
    that is: the marked start packet, an update, or one of the end packets when
    everything before them was lost. Later packets of an event already reported are
    ignored, so the triple end packet (§2.5.1.4) and reordering never count a digit
    twice, and an event whose packets all arrive late is still reported.

    Two senders' habits need care: an event longer than a 16-bit duration continues
    under a new timestamp without the marker bit (§2.5.1.3), which is the same key
    press; and tools that replay a recording (SIPp's ``play_pcap_audio``) send the
    same timestamps again for the next press of the same key, which we tell from a
    reordered start packet by the marker bit and a gap of :data:`REPLAY_GAP_SECONDS`
    after the event ended.
    """

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self._ssrc: int | None = None
        self._events: dict[int, _Seen] = {}
        self._current: int | None = None
        """Timestamp of the event that started last."""

    def feed(self, packet: RtpPacket, now: float) -> str | None:
        """The digit ``packet`` (arriving at ``now``, in seconds) reveals for the first
        time, else ``None``."""
        if packet.payload_type != self.payload_type:
            return None
        try:
            event = parse(packet.payload)
        except TelephoneEventError:
            return None
        if packet.ssrc != self._ssrc:  # §2.5.1.2 lets a sender change SSRC between events
            self._ssrc, self._events, self._current = packet.ssrc, {}, None
        seen = self._events.get(packet.timestamp)
        if seen is not None:
            replayed = (
                packet.marker and seen.ended and now - seen.last_packet_at >= REPLAY_GAP_SECONDS
            )
            if not replayed:
                seen.ended = seen.ended or event.end
                seen.last_packet_at = now
                return None
        elif not packet.marker and self._current is not None:
            current = self._events[self._current]
            if not current.ended and current.event == event.event:
                self._remember(packet.timestamp, _Seen(event.event, event.end, now))
                current.ended = True  # the segment before is over
                return None
        self._remember(packet.timestamp, _Seen(event.event, event.end, now))
        return event.digit

    def _remember(self, timestamp: int, seen: _Seen) -> None:
        self._events.pop(timestamp, None)
        self._events[timestamp] = seen
        self._current = timestamp
        while len(self._events) > _REMEMBERED_EVENTS:
            del self._events[next(iter(self._events))]
