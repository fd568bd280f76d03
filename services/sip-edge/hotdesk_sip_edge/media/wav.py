"""Prompt audio as the prompt store holds it: a WAV file (RIFF, ``fmt `` + ``data``
chunks) of 8 kHz mono 16-bit linear PCM, μ-law or A-law, or bare 16-bit PCM."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import g711

PCM16 = "pcm16"
ULAW = "ulaw"
ALAW = "alaw"
_WAVE_FORMATS = {1: PCM16, 6: ALAW, 7: ULAW}
"""WAVE format tags: 1 PCM, 6 A-law, 7 μ-law (Microsoft RIFF specification)."""


class WavError(ValueError):
    """Audio the edge cannot play: not WAV, or not 8 kHz mono."""


@dataclass(frozen=True)
class Audio:
    encoding: str
    """``pcm16`` (little-endian), ``ulaw`` or ``alaw``."""
    data: bytes


def parse(data: bytes) -> Audio:
    """Read a WAV file; bytes without a RIFF header are taken as bare 16-bit PCM."""
    if not data.startswith(b"RIFF"):
        return Audio(PCM16, data[: len(data) // 2 * 2])
    if len(data) < 12 or data[8:12] != b"WAVE":
        raise WavError("RIFF file is not WAVE")
    offset, encoding, audio = 12, None, None
    while offset + 8 <= len(data):
        chunk, size = struct.unpack_from("<4sI", data, offset)
        body = data[offset + 8 : offset + 8 + size]
        if chunk == b"fmt ":
            if len(body) < 16:
                raise WavError("WAV fmt chunk is too short")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag inside
                tag = struct.unpack_from("<H", body, 24)[0]
            if tag not in _WAVE_FORMATS:
                raise WavError(f"WAV format tag {tag} is not PCM, A-law or μ-law")
            if channels != 1 or rate != 8000:
                raise WavError(f"prompt audio must be 8 kHz mono, got {rate} Hz x {channels}")
            encoding = _WAVE_FORMATS[tag]
            if encoding == PCM16 and bits != 16:
                raise WavError(f"PCM prompt audio must be 16-bit, got {bits}-bit")
        elif chunk == b"data":
            audio = body
        offset += 8 + size + (size & 1)  # chunks are padded to even sizes
    if encoding is None or audio is None:
        raise WavError("WAV file lacks a fmt or data chunk")
    if encoding == PCM16:
        audio = audio[: len(audio) // 2 * 2]
    return Audio(encoding, audio)


def to_payload(audio: Audio, payload_type: int) -> bytes:
    """The audio in the codec of RTP payload type 0 (PCMU) or 8 (PCMA)."""
    if audio.encoding == PCM16:
        return g711.encode(audio.data, payload_type)
    if audio.encoding == ULAW:
        return audio.data if payload_type == 0 else g711.ulaw_to_alaw(audio.data)
    if payload_type == 8:
        return audio.data
    return g711.ulaw_encode(g711.alaw_decode(audio.data))
