"""RTP and RFC 4733 against the DTMF captures Debian's sip-tester ships, plus the loss,
reordering and repetition cases RFC 4733 §2.5.1 asks a receiver to survive."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotdesk_sip_edge.media import rfc4733, rtp
from hotdesk_sip_edge.media.rfc4733 import DtmfDetector, TelephoneEvent
from tests.sip_edge.media.pcap import DTMF_CAPTURES, udp_datagrams


def capture_packets(digit: str) -> list[rtp.RtpPacket]:
    return [rtp.parse(d.payload) for d in udp_datagrams(DTMF_CAPTURES[digit])]


def detect(
    packets: list[rtp.RtpPacket], payload_type: int = 101, spacing: float = 0.02
) -> list[str]:
    """Digits the detector reports for ``packets`` arriving ``spacing`` seconds apart."""
    detector = DtmfDetector(payload_type)
    found = (detector.feed(p, i * spacing) for i, p in enumerate(packets))
    return [d for d in found if d is not None]


@pytest.mark.parametrize("digit", sorted(DTMF_CAPTURES))
def test_each_capture_round_trips_byte_for_byte(digit: str) -> None:
    for datagram in udp_datagrams(DTMF_CAPTURES[digit]):
        packet = rtp.parse(datagram.payload)
        assert rtp.serialize(packet) == datagram.payload
        assert rfc4733.serialize(rfc4733.parse(packet.payload)) == packet.payload


@pytest.mark.parametrize("digit", sorted(DTMF_CAPTURES))
def test_each_capture_yields_exactly_its_one_digit(digit: str) -> None:
    packets = capture_packets(digit)
    assert packets[0].marker
    assert sum(rfc4733.parse(p.payload).end for p in packets) == 3
    assert detect(packets) == [digit]


def test_a_digit_whose_start_was_lost_is_reported_at_its_end_packet() -> None:
    packets = [p for p in capture_packets("5") if rfc4733.parse(p.payload).end]
    assert detect(packets) == ["5"]


def test_repeated_end_packets_and_reordering_count_the_digit_once() -> None:
    packets = capture_packets("7")
    shuffled = [packets[3], packets[0], packets[9], packets[1], packets[8], packets[7]]
    assert detect(shuffled + packets) == ["7"]


def test_a_late_packet_of_an_already_reported_event_is_ignored() -> None:
    one, two = capture_packets("1"), capture_packets("2")
    # The captures come from one sender: digit 2 starts later than digit 1.
    assert detect([one[0], two[0], one[9], two[5]]) == ["1", "2"]


def test_the_same_digit_pressed_twice_is_reported_twice() -> None:
    first = capture_packets("3")
    second = [dataclasses.replace(p, timestamp=p.timestamp + 8000) for p in first]
    assert detect(first + second) == ["3", "3"]


def test_a_recording_replayed_after_a_pause_counts_as_a_second_press() -> None:
    # SIPp's play_pcap_audio sends the capture's own timestamps every time.
    packets = capture_packets("1")
    detector = DtmfDetector(101)
    first = [detector.feed(p, i * 0.02) for i, p in enumerate(packets)]
    again = [detector.feed(p, 0.5 + i * 0.02) for i, p in enumerate(packets)]
    assert [d for d in first + again if d] == ["1", "1"]


def test_a_reordered_start_packet_soon_after_the_end_is_not_a_second_press() -> None:
    packets = capture_packets("1")
    assert detect([*packets[1:], packets[0]]) == ["1"]


def test_a_long_event_continued_under_a_new_timestamp_is_one_digit() -> None:
    # RFC 4733 §2.5.1.3: a continuation segment carries a new timestamp, no marker.
    first = capture_packets("4")[:5]
    cont = [
        dataclasses.replace(p, timestamp=p.timestamp + 65535, marker=False)
        for p in capture_packets("4")[1:]
    ]
    assert detect(first + cont) == ["4"]


def test_timestamps_wrapping_past_2_to_the_32_still_order_events() -> None:
    a = dataclasses.replace(capture_packets("8")[0], timestamp=0xFFFFFF00)
    b = dataclasses.replace(capture_packets("9")[0], timestamp=0x00000100)
    assert detect([a, b, a]) == ["8", "9"]


def test_a_new_ssrc_starts_afresh() -> None:
    a = capture_packets("6")[0]
    b = dataclasses.replace(a, ssrc=a.ssrc + 1, timestamp=a.timestamp - 1000)
    assert detect([a, b]) == ["6", "6"]


def test_packets_of_another_payload_type_are_not_dtmf() -> None:
    assert detect(capture_packets("0"), payload_type=96) == []


@given(
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none() | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12)),
    padding=st.integers(0, 255),
)
def test_rtp_serialize_then_parse_is_identity(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool,
    csrc: tuple[int, ...],
    extension: tuple[int, bytes] | None,
    padding: int,
) -> None:
    if extension is not None:
        extension = (extension[0], extension[1][: len(extension[1]) // 4 * 4])
    packet = rtp.RtpPacket(
        payload_type=payload_type,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=payload,
        marker=marker,
        csrc=csrc,
        extension=extension,
        padding=padding,
    )
    assert rtp.parse(rtp.serialize(packet)) == packet


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00", "shorter than the 12-byte header"),
        (b"\x40" + bytes(11), "version 1"),
        (b"\x82" + bytes(11) + bytes(4), "CSRC"),
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x05", "extension longer"),
        (b"\xa0" + bytes(11) + b"\x00", "padding"),
    ],
)
def test_malformed_rtp_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(rtp.RtpError, match=reason):
        rtp.parse(data)


@given(
    event=st.integers(0, 255),
    end=st.booleans(),
    volume=st.integers(0, 63),
    duration=st.integers(0, 0xFFFF),
)
def test_telephone_event_round_trips(event: int, end: bool, volume: int, duration: int) -> None:
    te = TelephoneEvent(event=event, end=end, volume=volume, duration=duration)
    assert rfc4733.parse(rfc4733.serialize(te)) == te


def test_event_codes_map_to_the_sixteen_dtmf_digits() -> None:
    assert [rfc4733.digit_event(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert TelephoneEvent(event=16, end=False, volume=0, duration=0).digit is None
    with pytest.raises(rfc4733.TelephoneEventError):
        rfc4733.parse(b"\x01\x02")
