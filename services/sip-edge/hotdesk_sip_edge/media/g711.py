"""G.711 μ-law and A-law (ITU-T G.711) with lookup tables.

Prompts are stored as 8 kHz 16-bit mono linear PCM and encoded to the negotiated codec
when a call first plays them; the encoded audio is cached, so tables only need to be
fast enough for that one pass. The algorithms follow the reference code that ships with
ITU-T G.191 (segment search, bias 0x84 for μ-law, even-bit inversion 0x55 for A-law).
"""

from __future__ import annotations

import array
import sys

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159
_ULAW_BIAS14 = 0x21
_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _ulaw_encode_sample(sample: int) -> int:
    # 14-bit magnitude with a bias of 0x21, as in the reference encoder.
    value = sample >> 2
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + _ULAW_BIAS14
    segment = next((i for i, end in enumerate(_ULAW_SEG_END) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _ulaw_decode_sample(code: int) -> int:
    code = ~code & 0xFF
    magnitude = ((((code & 0x0F) << 3) + _ULAW_BIAS) << ((code >> 4) & 0x07)) - _ULAW_BIAS
    return -magnitude if code & 0x80 else magnitude


def _alaw_encode_sample(sample: int) -> int:
    value = sample >> 3  # A-law works on 13 bits
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next((i for i, end in enumerate(_ALAW_SEG_END) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return code ^ mask


def _alaw_decode_sample(code: int) -> int:
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        value += 8
    else:
        value = (value + 0x108) << (segment - 1)
    return value if code & 0x80 else -value


# Encoding tables are indexed by the sample as an unsigned 16-bit number.
_ULAW_ENCODE = bytes(_ulaw_encode_sample(s - 65536 if s >= 32768 else s) for s in range(65536))
_ALAW_ENCODE = bytes(_alaw_encode_sample(s - 65536 if s >= 32768 else s) for s in range(65536))
_ULAW_DECODE = array.array("h", (_ulaw_decode_sample(c) for c in range(256)))
_ALAW_DECODE = array.array("h", (_alaw_decode_sample(c) for c in range(256)))

ULAW_SILENCE = 0xFF
"""μ-law code of a zero sample."""
ALAW_SILENCE = 0xD5
"""A-law code of a zero sample."""


class G711Error(ValueError):
    """Linear PCM that is not whole 16-bit samples."""


def _samples(pcm: bytes) -> array.array[int]:
    if len(pcm) % 2:
        raise G711Error(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
    samples = array.array("H")
    samples.frombytes(pcm)
    if sys.byteorder == "big":  # PCM is little-endian, as WAV stores it
        samples.byteswap()
    return samples


def _pcm(samples: array.array[int]) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian linear PCM → μ-law, one byte per sample."""
    table = _ULAW_ENCODE
    return bytes(table[s] for s in _samples(pcm))


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian linear PCM → A-law, one byte per sample."""
    table = _ALAW_ENCODE
    return bytes(table[s] for s in _samples(pcm))


def ulaw_decode(codes: bytes) -> bytes:
    """μ-law → 16-bit little-endian linear PCM."""
    table = _ULAW_DECODE
    return _pcm(array.array("h", (table[c] for c in codes)))


def alaw_decode(codes: bytes) -> bytes:
    """A-law → 16-bit little-endian linear PCM."""
    table = _ALAW_DECODE
    return _pcm(array.array("h", (table[c] for c in codes)))


def ulaw_to_alaw(codes: bytes) -> bytes:
    """Transcode μ-law to A-law (for a prompt stored pre-encoded in μ-law)."""
    return alaw_encode(ulaw_decode(codes))


def encode(pcm: bytes, payload_type: int) -> bytes:
    """Encode linear PCM for RTP payload type 0 (PCMU) or 8 (PCMA)."""
    if payload_type == 0:
        return ulaw_encode(pcm)
    if payload_type == 8:
        return alaw_encode(pcm)
    raise G711Error(f"payload type {payload_type} is not G.711")


def silence(payload_type: int) -> int:
    """The code of a zero sample in the codec of ``payload_type``."""
    return ULAW_SILENCE if payload_type == 0 else ALAW_SILENCE
