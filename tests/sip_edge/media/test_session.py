"""The media session on loopback UDP against a small Python RTP peer."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hotdesk_sip_edge.media import g711, rtp, sdp, wav
from hotdesk_sip_edge.media.ivr_bridge import IvrBridge
from hotdesk_sip_edge.media.metrics import Histogram
from hotdesk_sip_edge.media.session import (
    FRAME_SAMPLES,
    MediaAddressError,
    MediaSession,
    NoRtpPort,
    builtin_file_not_found,
    check_media_address,
)
from tests.sip_edge.media.pcap import DTMF_CAPTURES, udp_datagrams
from tests.sip_edge.media.rtp_peer import RtpPeer

PROMPTS = Path(__file__).resolve().parents[3] / "prompts"
PORTS = (31000, 31999)


class DictPrompts:
    def __init__(self, prompts: dict[str, bytes]) -> None:
        self.prompts = prompts

    async def get(self, prompt_id: str) -> bytes | None:
        return self.prompts.get(prompt_id)


def tone(frames: int) -> bytes:
    """Linear PCM that is not silence, ``frames`` x 20 ms long."""
    return bytes((i * 37) % 256 for i in range(frames * FRAME_SAMPLES * 2))


class Call:
    def __init__(self) -> None:
        self.digits: list[tuple[str, str]] = []
        self.timed_out = asyncio.Event()
        self.jitter = Histogram([0.001 * i for i in range(100)])

    async def open(
        self,
        peer: RtpPeer,
        prompts: dict[str, bytes],
        *,
        offer: bytes | None = None,
        media_timeout: float = 30.0,
    ) -> MediaSession:
        return await MediaSession.open(
            offer=offer or peer.offer(),
            local_host="127.0.0.1",
            port_range=PORTS,
            prompts=DictPrompts(prompts),
            on_dtmf=lambda digit, source: self.digits.append((digit, source)),
            on_media_timeout=self.timed_out.set,
            media_timeout=media_timeout,
            jitter=self.jitter,
        )


@pytest.fixture
async def peer() -> AsyncIterator[RtpPeer]:
    p = await RtpPeer().start()
    yield p
    p.close()


def frames_of(payload: bytes, silence: int) -> list[bytes]:
    frames = [payload[i : i + FRAME_SAMPLES] for i in range(0, len(payload), FRAME_SAMPLES)]
    frames[-1] = frames[-1].ljust(FRAME_SAMPLES, bytes([silence]))
    return frames


@pytest.mark.parametrize(("formats", "payload_type"), [("0 8 101", 0), ("8 0 101", 8)])
async def test_prompt_audio_arrives_in_order_as_the_g711_encoding_of_the_prompt_files(
    peer: RtpPeer, formats: str, payload_type: int
) -> None:
    one = (PROMPTS / "en" / "digit-1.wav").read_bytes()
    two = (PROMPTS / "en" / "digit-2.wav").read_bytes()
    call = Call()
    session = await call.open(
        peer, {"en/digit-1": one, "en/digit-2": two}, offer=peer.offer(formats)
    )
    try:
        assert f"m=audio {session.local_port} RTP/AVP {payload_type} 101" in session.answer.decode()
        result = await session.play(["en/digit-1", "en/digit-2"])
        assert result.completed
        assert result.missing == []
        pcm = wav.parse(one).data + wav.parse(two).data
        expected = frames_of(g711.encode(pcm, payload_type), g711.silence(payload_type))
        got = [r.packet for r in await peer.collect(len(expected))]
        assert [p.payload for p in got] == expected
        assert {p.payload_type for p in got} == {payload_type}
        assert len({p.ssrc for p in got}) == 1
        assert [p.marker for p in got] == [True] + [False] * (len(got) - 1)
        assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(got))
        assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in itertools.pairwise(got))
        assert peer.received.empty()
        assert call.jitter.count == len(expected)
    finally:
        await session.close()


async def test_a_second_talkspurt_continues_sequence_and_clock_with_a_marker(
    peer: RtpPeer,
) -> None:
    session = await Call().open(peer, {"a": tone(3)})
    try:
        await session.play(["a"])
        first = [r.packet for r in await peer.collect(3)]
        await asyncio.sleep(0.1)
        await session.play(["a"])
        second = [r.packet for r in await peer.collect(3)]
        assert second[0].marker
        assert (second[0].sequence - first[-1].sequence) % 65536 == 1
        # The timestamp kept counting through the silence between the two plays.
        assert (second[0].timestamp - first[-1].timestamp) % 2**32 > 160
    finally:
        await session.close()


async def test_rfc4733_packets_from_the_captures_give_each_digit_once(peer: RtpPeer) -> None:
    call = Call()
    session = await call.open(peer, {})
    try:
        for digit in ["1", "0", "#", "5"]:
            for datagram in udp_datagrams(DTMF_CAPTURES[digit]):
                peer.send(datagram.payload, session.local_port)
                await asyncio.sleep(0.002)
        for _ in range(200):
            if len(call.digits) >= 4:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert call.digits == [
            ("1", "rfc4733"),
            ("0", "rfc4733"),
            ("#", "rfc4733"),
            ("5", "rfc4733"),
        ]
    finally:
        await session.close()


async def test_a_digit_interrupts_a_prompt_that_allows_barge_in(peer: RtpPeer) -> None:
    call = Call()
    session = await call.open(peer, {"long": tone(200)})
    try:
        playing = asyncio.create_task(session.play(["long"]))
        await peer.next()
        session.dtmf_from_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n")
        result = await asyncio.wait_for(playing, 5)
        assert not result.completed
        assert call.digits == [("5", "info")]
    finally:
        await session.close()


async def test_a_digit_does_not_interrupt_a_prompt_without_barge_in(peer: RtpPeer) -> None:
    call = Call()
    session = await call.open(peer, {"short": tone(5)})
    try:
        playing = asyncio.create_task(session.play(["short"], barge_in=False))
        await peer.next()
        session.dtmf_from_info("application/dtmf", b"7")
        assert (await asyncio.wait_for(playing, 5)).completed
        assert call.digits == [("7", "info")]
    finally:
        await session.close()


async def test_stop_playback_cuts_the_prompt_short(peer: RtpPeer) -> None:
    session = await Call().open(peer, {"long": tone(200)})
    try:
        playing = asyncio.create_task(session.play(["long"], barge_in=False))
        await peer.next()
        session.stop_playback()
        assert not (await asyncio.wait_for(playing, 5)).completed
    finally:
        await session.close()


async def test_a_missing_prompt_plays_file_not_found_and_logs_its_id(
    peer: RtpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    session = await Call().open(peer, {})
    try:
        with caplog.at_level(logging.ERROR):
            result = await session.play(["en/no-such-prompt"])
        assert result.missing == ["en/no-such-prompt"]
        assert any(
            getattr(r, "prompt_id", None) == "en/no-such-prompt" and r.levelno == logging.ERROR
            for r in caplog.records
        )
        expected = frames_of(
            g711.encode(wav.parse(builtin_file_not_found()).data, 0), g711.silence(0)
        )
        got = await peer.collect(len(expected))
        assert [r.packet.payload for r in got] == expected
    finally:
        await session.close()


async def test_rtp_goes_to_where_the_phones_packets_come_from_once_they_arrive(
    peer: RtpPeer,
) -> None:
    session = await Call().open(peer, {"a": tone(2)})
    behind_nat = await RtpPeer().start()
    try:
        await session.play(["a"])
        assert len(await peer.collect(2)) == 2  # before any RTP: the SDP address
        hello = rtp.RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=7, payload=bytes(160))
        behind_nat.send(rtp.serialize(hello), session.local_port)
        for _ in range(100):
            if session.remote == ("127.0.0.1", behind_nat.port):
                break
            await asyncio.sleep(0.01)
        await session.play(["a"])
        assert len(await behind_nat.collect(2)) == 2
        assert peer.received.empty()
    finally:
        behind_nat.close()
        await session.close()


async def test_the_media_timeout_fires_when_rtp_stops_arriving(peer: RtpPeer) -> None:
    call = Call()
    session = await call.open(peer, {}, media_timeout=0.3)
    try:
        keepalive = rtp.RtpPacket(
            payload_type=0, sequence=0, timestamp=0, ssrc=9, payload=bytes(160)
        )
        for _ in range(12):  # 600 ms of RTP: twice the timeout, and it must not fire
            peer.send(rtp.serialize(keepalive), session.local_port)
            await asyncio.sleep(0.05)
        assert not call.timed_out.is_set()
        await asyncio.wait_for(call.timed_out.wait(), 5)
    finally:
        await session.close()


async def test_an_offer_without_g711_is_refused_before_a_port_is_taken(peer: RtpPeer) -> None:
    with pytest.raises(sdp.NoCommonCodec):
        await Call().open(peer, {}, offer=peer.offer("9 18"))


async def test_rtp_ports_are_even_and_inside_the_range(peer: RtpPeer) -> None:
    sessions = [await Call().open(peer, {}) for _ in range(4)]
    try:
        ports = [s.local_port for s in sessions]
        assert all(p % 2 == 0 and PORTS[0] <= p <= PORTS[1] for p in ports)
        assert len(set(ports)) == 4
    finally:
        for s in sessions:
            await s.close()


async def test_packets_from_another_sender_are_neither_media_nor_digits(peer: RtpPeer) -> None:
    call = Call()
    session = await call.open(peer, {"a": tone(2)})
    intruder = await RtpPeer().start()
    try:
        hello = rtp.RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=7, payload=b"x")
        peer.send(rtp.serialize(hello), session.local_port)
        for _ in range(100):
            if session.remote_learned:
                break
            await asyncio.sleep(0.01)
        for datagram in udp_datagrams(DTMF_CAPTURES["9"]):
            intruder.send(datagram.payload, session.local_port)
        await session.play(["a"])
        assert len(await peer.collect(2)) == 2
        assert intruder.received.empty()
        assert call.digits == []
    finally:
        intruder.close()
        await session.close()


async def test_silence_continues_the_stream_without_a_new_talkspurt(peer: RtpPeer) -> None:
    session = await Call().open(peer, {"a": tone(2)})
    try:
        await session.play(["a"])
        await session.play_silence(0.06)
        got = [r.packet for r in await peer.collect(5)]
        assert [p.marker for p in got] == [True, False, False, False, False]
        assert all(p.payload == bytes([g711.silence(0)]) * 160 for p in got[2:])
        assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(got))
    finally:
        await session.close()


async def test_a_range_without_a_free_even_port_is_refused(peer: RtpPeer) -> None:
    taken = await Call().open(peer, {})
    try:
        port = taken.local_port
        with pytest.raises(NoRtpPort, match="in use"):
            await MediaSession.open(
                offer=peer.offer(),
                local_host="127.0.0.1",
                port_range=(port, port + 1),
                prompts=DictPrompts({}),
                on_dtmf=lambda d, s: None,
                on_media_timeout=lambda: None,
                media_timeout=30.0,
            )
    finally:
        await taken.close()


async def wait_latched(session: MediaSession) -> None:
    for _ in range(200):
        if session.remote_learned:
            return
        await asyncio.sleep(0.01)


def hello(ssrc: int = 7) -> bytes:
    return rtp.serialize(
        rtp.RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=ssrc, payload=bytes(160))
    )


async def test_rtp_binds_locally_while_the_sdp_advertises_a_public_address(
    peer: RtpPeer,
) -> None:
    call = Call()
    session = await MediaSession.open(
        offer=peer.offer(),
        local_host="192.0.2.10",  # TEST-NET-1: only ever written into the SDP
        bind_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts({"a": tone(2)}),
        on_dtmf=lambda digit, source: call.digits.append((digit, source)),
        on_media_timeout=call.timed_out.set,
        media_timeout=30.0,
    )
    try:
        assert b"c=IN IP4 192.0.2.10\r\n" in session.answer
        peer.send(hello(), session.local_port)
        await wait_latched(session)
        await session.play(["a"])
        assert len(await peer.collect(2)) == 2
    finally:
        await session.close()


async def test_the_ivr_bridge_passes_the_bind_address_to_the_media(peer: RtpPeer) -> None:
    bridge = await IvrBridge.answer_call(
        nc=None,  # type: ignore[arg-type]  # answering opens media only; nothing is published
        edge_id="edge-1",
        call_id="c1",
        send_bye=lambda: None,
        offer=peer.offer(),
        local_host="192.0.2.10",
        bind_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts({}),
        media_timeout=30.0,
    )
    assert bridge.media is not None
    try:
        assert b"c=IN IP4 192.0.2.10\r\n" in bridge.answer
        assert bridge.media.transport.get_extra_info("sockname")[0] == "127.0.0.1"
    finally:
        await bridge.media.close()


async def test_an_advertised_host_name_is_refused_naming_the_setting(peer: RtpPeer) -> None:
    with pytest.raises(MediaAddressError, match=r"sip\.advertised_host"):
        await MediaSession.open(
            offer=peer.offer(),
            local_host="edge.example.com",
            bind_host="127.0.0.1",
            port_range=PORTS,
            prompts=DictPrompts({}),
            on_dtmf=lambda digit, source: None,
            on_media_timeout=lambda: None,
            media_timeout=30.0,
        )
    assert check_media_address("192.0.2.10") == "192.0.2.10"


async def test_a_phone_sending_rfc4733_and_sip_info_has_each_key_counted_once(
    peer: RtpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    call = Call()
    session = await call.open(peer, {})
    try:
        with caplog.at_level(logging.INFO):
            for digit in ["1", "2"]:
                for datagram in udp_datagrams(DTMF_CAPTURES[digit]):
                    peer.send(datagram.payload, session.local_port)
                    await asyncio.sleep(0.002)
                for _ in range(200):
                    if call.digits and call.digits[-1][0] == digit:
                        break
                    await asyncio.sleep(0.01)
                session.dtmf_from_info("application/dtmf-relay", f"Signal={digit}\r\n".encode())
        assert call.digits == [("1", "rfc4733"), ("2", "rfc4733")]
        ignored = [
            r for r in caplog.records if r.getMessage() == "DTMF from a second source ignored"
        ]
        assert len(ignored) == 1
    finally:
        await session.close()


async def test_when_sip_info_comes_first_rfc4733_events_are_ignored(peer: RtpPeer) -> None:
    call = Call()
    session = await call.open(peer, {})
    try:
        session.dtmf_from_info("application/dtmf", b"3")
        for datagram in udp_datagrams(DTMF_CAPTURES["3"]):
            peer.send(datagram.payload, session.local_port)
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.1)
        session.dtmf_from_info("application/dtmf", b"4")
        assert call.digits == [("3", "info"), ("4", "info")]
    finally:
        await session.close()


def offer_from(peer: RtpPeer, host: str) -> bytes:
    """The peer's offer as if its SDP named ``host`` (a phone behind NAT, or another
    address that is never sent to in these tests: nothing is played before latching)."""
    return peer.offer().replace(b"IN IP4 127.0.0.1", f"IN IP4 {host}".encode())


async def test_a_foreign_sender_spraying_first_is_neither_latched_nor_heard(
    peer: RtpPeer,
) -> None:
    call = Call()
    # The phone's SDP names 192.0.2.10 and nothing else was signalled: loopback
    # senders are strangers to this call.
    session = await call.open(peer, {}, offer=offer_from(peer, "192.0.2.10"))
    try:
        peer.send(hello(), session.local_port)
        for datagram in udp_datagrams(DTMF_CAPTURES["9"]):
            peer.send(datagram.payload, session.local_port)
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.1)
        assert not session.remote_learned
        assert session.remote == ("192.0.2.10", peer.port)
        assert call.digits == []
    finally:
        await session.close()


async def test_rtp_from_the_signalling_source_latches_when_the_sdp_names_another_address(
    peer: RtpPeer,
) -> None:
    call = Call()
    session = await MediaSession.open(
        offer=offer_from(peer, "192.0.2.10"),  # the phone's private address behind NAT
        local_host="127.0.0.1",
        port_range=PORTS,
        prompts=DictPrompts({"a": tone(2)}),
        on_dtmf=lambda digit, source: call.digits.append((digit, source)),
        on_media_timeout=call.timed_out.set,
        media_timeout=30.0,
        peer_hosts=["127.0.0.1"],  # where its INVITE came from
    )
    try:
        for datagram in udp_datagrams(DTMF_CAPTURES["9"]):
            peer.send(datagram.payload, session.local_port)
            await asyncio.sleep(0.002)
        await wait_latched(session)
        assert session.remote == ("127.0.0.1", peer.port)
        await session.play(["a"])
        assert len(await peer.collect(2)) == 2
        assert call.digits == [("9", "rfc4733")]
    finally:
        await session.close()
