"""The shared 20 ms pacer: one tick for every playing call, packets built before the
talkspurt starts, and lateness counted against a fixed schedule."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotdesk_sip_edge.media import rtp
from hotdesk_sip_edge.media.metrics import Histogram
from hotdesk_sip_edge.media.pacer import FRAME_SAMPLES, PHASES, pacer_of, packets
from hotdesk_sip_edge.media.session import MediaSession
from tests.sip_edge.media.rtp_peer import RtpPeer

PORTS = (33000, 33999)


class Prompts:
    def __init__(self, frames: int) -> None:
        # 16-bit PCM that is not silence, ``frames`` x 20 ms long.
        self.audio = bytes((i * 37) % 256 for i in range(frames * FRAME_SAMPLES * 2))

    async def get(self, prompt_id: str) -> bytes | None:
        return self.audio


async def open_session(peer: RtpPeer, frames: int, jitter: Histogram) -> MediaSession:
    return await MediaSession.open(
        offer=peer.offer(),
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=Prompts(frames),
        on_dtmf=lambda digit, source: None,
        on_media_timeout=lambda: None,
        media_timeout=30.0,
        jitter=jitter,
    )


@pytest.fixture
async def peers() -> AsyncIterator[list[RtpPeer]]:
    started = [await RtpPeer().start() for _ in range(20)]
    yield started
    for peer in started:
        peer.close()


@given(
    size=st.integers(1, 5 * FRAME_SAMPLES),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
)
def test_built_packets_parse_back_with_consecutive_numbers_and_a_padded_tail(
    size: int, sequence: int, timestamp: int, marker: bool
) -> None:
    payload = bytes(i % 251 for i in range(size))
    built = [
        rtp.parse(bytes(view))
        for view in packets(
            payload,
            payload_type=8,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=0xDEADBEEF,
            marker=marker,
            pad=0xD5,
        )
    ]
    assert b"".join(p.payload for p in built) == payload.ljust(len(built) * FRAME_SAMPLES, b"\xd5")
    assert all(len(p.payload) == FRAME_SAMPLES for p in built)
    assert [p.marker for p in built] == [marker] + [False] * (len(built) - 1)
    assert {(p.payload_type, p.ssrc) for p in built} == {(8, 0xDEADBEEF)}
    assert [p.sequence for p in built] == [(sequence + i) % 65536 for i in range(len(built))]
    assert [p.timestamp for p in built] == [
        (timestamp + i * FRAME_SAMPLES) % 2**32 for i in range(len(built))
    ]


async def test_twenty_calls_playing_at_once_share_one_tick_per_20_ms(
    peers: list[RtpPeer],
) -> None:
    frames = 25  # half a second each
    jitter = Histogram([0.001 * i for i in range(100)])
    sessions = [await open_session(peer, frames, jitter) for peer in peers]
    pacer = pacer_of(asyncio.get_running_loop())
    ticks = pacer.ticks
    try:
        results = await asyncio.gather(*(s.play(["tone"]) for s in sessions))
        assert all(r.completed for r in results)
        for peer in peers:
            got = [r.packet for r in await peer.collect(frames)]
            assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(got))
            assert peer.received.empty()
        # One pass per 20 ms for all twenty calls, not twenty: the frames, the tick
        # after the last that ends the plays, and a few for sessions joining late.
        assert pacer.ticks - ticks <= frames + 5
        assert jitter.count == frames * len(peers)
        assert pacer.playing == 0  # idle again: no timer runs without a call playing
    finally:
        for session in sessions:
            await session.close()


async def test_a_stalled_loop_shows_as_late_packets_and_the_stream_catches_up(
    peers: list[RtpPeer],
) -> None:
    peer = peers[0]
    jitter = Histogram([0.001 * i for i in range(200)])
    session = await open_session(peer, 50, jitter)
    try:
        play = asyncio.create_task(session.play(["tone"]))
        await peer.collect(5)
        time.sleep(0.1)  # the loop is held up for five ticks
        assert (await play).completed
        got = [r.packet for r in await peer.collect(45)]
        assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(got))
        assert jitter.count == 50
        # The packets due while the loop was held left up to 100 ms late, and say so.
        assert jitter.maximum >= 0.08
        late = sum(
            n for bound, n in zip(jitter.bounds, jitter.counts, strict=False) if bound > 0.02
        )
        assert late >= 3
    finally:
        await session.close()


async def test_a_cut_talkspurt_stops_sending_and_the_next_continues_its_numbers(
    peers: list[RtpPeer],
) -> None:
    peer = peers[0]
    session = await open_session(peer, 50, Histogram([0.01]))
    try:
        play = asyncio.create_task(session.play(["tone"]))
        first = [r.packet for r in await peer.collect(3)]
        session.stop_playback()
        assert not (await play).completed
        await asyncio.sleep(0.1)
        while not peer.received.empty():
            first.append((await peer.next()).packet)
        assert len(first) < 10
        await session.play_silence(0.04)
        after = [r.packet for r in await peer.collect(2)]
        assert (after[0].sequence - first[-1].sequence) % 65536 == 1
        assert (after[0].timestamp - first[-1].timestamp) % 2**32 >= FRAME_SAMPLES
    finally:
        await session.close()


async def test_calls_playing_at_once_are_spread_over_the_slots_of_a_tick(
    peers: list[RtpPeer],
) -> None:
    """One pass per 5 ms slot sends a quarter of the calls: the burst of one pass for
    every call was what made packets late (the last ones left milliseconds after due)."""
    frames = 25
    jitter = Histogram([0.001 * i for i in range(100)])
    sessions = [await open_session(peer, frames, jitter) for peer in peers]
    pacer = pacer_of(asyncio.get_running_loop())
    try:
        plays = [asyncio.create_task(s.play(["tone"])) for s in sessions]
        async with asyncio.timeout(10):
            while pacer.playing < len(sessions):
                await asyncio.sleep(0.001)
        per_slot = [len(slot) for slot in pacer._playing]
        assert len(per_slot) == PHASES
        assert sum(per_slot) == len(sessions)
        assert max(per_slot) - min(per_slot) <= 1
        assert all(r.completed for r in await asyncio.gather(*plays))
        for peer in peers:
            got = [r.packet for r in await peer.collect(frames)]
            assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(got))
    finally:
        for session in sessions:
            await session.close()
