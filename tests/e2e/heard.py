"""What a desk heard on an IVR call, against the prompt files.

The edge plays each ``PlayPrompts`` as one talkspurt (RFC 3551 §4.1: the marker bit on
its first packet), 160 μ-law bytes a packet, the last one padded with silence; before
its BYE it sends 0.3 s of silence without a marker. A recording of the RTP a client
received is cut into talkspurts here and each compared byte for byte with the prompt
files, encoded as the edge encodes them (``wav.to_payload``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from hotdesk_ivr import prompts
from hotdesk_sip_edge.media import g711, wav
from tests.sip_edge.media.rtp_peer import RtpPeer

FRAME = 160
PCMU = 0
SILENCE = bytes([g711.ULAW_SILENCE])
FILE_NOT_FOUND = "file-not-found (built into the edge)"
"""Stands for the edge's own "file not found" prompt in :class:`Spurt` lists."""


def prompt_payload(prompt_id: str) -> bytes:
    """The μ-law the edge sends for ``prompt_id``: a bundled prompt's WAV file, or the
    edge's built-in "file not found" for :data:`FILE_NOT_FOUND`."""
    if prompt_id == FILE_NOT_FOUND:
        data = resources.files("hotdesk_sip_edge.media").joinpath("file-not-found.wav")
        return wav.to_payload(wav.parse(data.read_bytes()), PCMU)
    bundled = next(p for p in prompts.bundled() if p.prompt_id == prompt_id)
    return wav.to_payload(wav.parse(bundled.path.read_bytes()), PCMU)


@dataclass(frozen=True)
class Spurt:
    """One expected talkspurt: ``prompts`` played one after the other. ``cut`` when a
    key press cut it short (barge-in): then what was heard is a non-empty start of it."""

    prompts: tuple[str, ...]
    cut: bool = False

    def payload(self) -> bytes:
        audio = b"".join(prompt_payload(p) for p in self.prompts)
        return audio + SILENCE * (-len(audio) % FRAME)


def played(*prompt_ids: str) -> Spurt:
    """A talkspurt heard whole."""
    return Spurt(prompt_ids)


def cut_short(*prompt_ids: str) -> Spurt:
    """A talkspurt a key press interrupted."""
    return Spurt(prompt_ids, cut=True)


def talkspurts(listener: RtpPeer) -> list[bytes]:
    """The payloads ``listener`` received so far, one bytes per talkspurt."""
    spurts: list[bytearray] = []
    previous: int | None = None
    while not listener.received.empty():
        packet = listener.received.get_nowait().packet
        assert packet.payload_type == PCMU, f"payload type {packet.payload_type}, not PCMU"
        assert len(packet.payload) == FRAME, f"a packet of {len(packet.payload)} bytes"
        if previous is not None:
            # Loopback loses and reorders nothing: a gap would be the edge's.
            assert packet.sequence == (previous + 1) & 0xFFFF, "RTP sequence gap"
        previous = packet.sequence
        if packet.marker or not spurts:
            assert packet.marker, "the first packet heard starts no talkspurt"
            spurts.append(bytearray())
        spurts[-1] += packet.payload
    return [bytes(s) for s in spurts]


def assert_heard(heard: list[bytes], expected: list[Spurt]) -> None:
    """``heard`` (from :func:`talkspurts`) is ``expected``, byte for byte; the last
    talkspurt may end in the silence sent before the BYE."""
    assert len(heard) == len(expected), (
        f"{len(heard)} talkspurts heard, {len(expected)} expected: "
        f"{[len(h) // FRAME for h in heard]} packets"
    )
    for n, (got, want) in enumerate(zip(heard, expected, strict=True)):
        audio = want.payload()
        what = f"talkspurt {n} ({' + '.join(want.prompts)})"
        if want.cut:
            assert 0 < len(got) <= len(audio), f"{what}: {len(got)} bytes, more than the prompts"
            assert got == audio[: len(got)], f"{what}: differs from the prompt files"
            continue
        assert got[: len(audio)] == audio, f"{what}: differs from the prompt files"
        tail = got[len(audio) :]
        if n < len(heard) - 1:
            assert not tail, f"{what}: {len(tail)} bytes more than the prompts"
        else:
            assert tail == SILENCE * len(tail), f"{what}: ends in something but silence"
