"""RTP packets (RFC 3550 §5.1): parse and serialise the fixed header, CSRCs, the header
extension and padding."""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
_FIXED = struct.Struct("!BBHII")


class RtpError(ValueError):
    """Bytes that are not a valid RTP packet."""


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet. ``padding`` is the number of padding octets (0: no P bit)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    """(profile-defined 16 bits, extension data whose length is a multiple of 4)."""
    padding: int = 0


def parse(data: bytes) -> RtpPacket:
    """Parse one RTP packet; raises :class:`RtpError` with the reason."""
    if len(data) < _FIXED.size:
        raise RtpError(f"RTP packet of {len(data)} bytes is shorter than the 12-byte header")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    has_padding, has_extension, cc = bool(b0 & 0x20), bool(b0 & 0x10), b0 & 0x0F
    offset = _FIXED.size + 4 * cc
    if len(data) < offset:
        raise RtpError(f"RTP packet truncated inside its {cc} CSRC entries")
    csrc = struct.unpack_from(f"!{cc}I", data, _FIXED.size)
    extension = None
    if has_extension:
        # RFC 3550 §5.3.1: 16 bits profile-defined, 16 bits length in 32-bit words.
        if len(data) < offset + 4:
            raise RtpError("RTP packet truncated inside its header extension")
        profile, words = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + 4 * words
        if len(data) < end:
            raise RtpError("RTP header extension longer than the packet")
        extension = (profile, bytes(data[offset + 4 : end]))
        offset = end
    end = len(data)
    padding = 0
    if has_padding:
        # RFC 3550 §5.1: the last octet counts the padding octets, itself included.
        padding = data[-1]
        if padding == 0 or offset + padding > len(data):
            raise RtpError(f"bad RTP padding count {padding}")
        end -= padding
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(b1 & 0x80),
        csrc=tuple(csrc),
        extension=extension,
        padding=padding,
    )


def serialize(packet: RtpPacket) -> bytes:
    """The packet's bytes. Raises :class:`RtpError` for fields that do not fit."""
    if not 0 <= packet.payload_type <= 127:
        raise RtpError(f"payload type {packet.payload_type} is not 0-127")
    if len(packet.csrc) > 15:
        raise RtpError("at most 15 CSRC entries fit in an RTP header")
    if not 0 <= packet.padding <= 255:
        raise RtpError(f"padding {packet.padding} is not 0-255")
    b0 = (
        (RTP_VERSION << 6)
        | (0x20 if packet.padding else 0)
        | (0x10 if packet.extension is not None else 0)
        | len(packet.csrc)
    )
    b1 = (0x80 if packet.marker else 0) | packet.payload_type
    parts = [
        _FIXED.pack(b0, b1, packet.sequence & 0xFFFF, packet.timestamp & 0xFFFFFFFF, packet.ssrc),
        struct.pack(f"!{len(packet.csrc)}I", *packet.csrc),
    ]
    if packet.extension is not None:
        profile, ext = packet.extension
        if len(ext) % 4:
            raise RtpError("RTP header extension data must be a multiple of 4 bytes")
        parts.append(struct.pack("!HH", profile, len(ext) // 4) + ext)
    parts.append(packet.payload)
    if packet.padding:
        parts.append(bytes(packet.padding - 1) + bytes([packet.padding]))
    return b"".join(parts)
