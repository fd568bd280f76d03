"""Properties of the media parsers and the DTMF detector, over generated inputs."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from hotdesk_sip_edge.media import rtp, sdp
from hotdesk_sip_edge.media.rfc4733 import DtmfDetector
from tests.sip_edge.media.pcap import DTMF_CAPTURES, udp_datagrams

CAPTURE_5 = [rtp.parse(d.payload) for d in udp_datagrams(DTMF_CAPTURES["5"])]
token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)
address = st.sampled_from(["192.0.2.1", "198.51.100.23", "127.0.0.1", "2001:db8::1"])
attribute = st.tuples(token, st.none() | token)


@st.composite
def media(draw: st.DrawFn) -> sdp.Media:
    return sdp.Media(
        media=draw(st.sampled_from(["audio", "video"])),
        port=draw(st.integers(0, 65535)),
        proto="RTP/AVP",
        formats=[str(f) for f in draw(st.lists(st.integers(0, 127), min_size=1, max_size=6))],
        connection=draw(st.none() | address),
        attributes=draw(st.lists(attribute, max_size=5)),
    )


@st.composite
def descriptions(draw: st.DrawFn) -> sdp.SessionDescription:
    return sdp.SessionDescription(
        origin=f"- {draw(st.integers(0, 2**31))} 1 IN IP4 192.0.2.1",
        session_name=draw(token),
        connection=draw(st.none() | address),
        media=draw(st.lists(media(), max_size=3)),
        attributes=draw(st.lists(attribute, max_size=3)),
    )


@given(descriptions())
def test_sdp_serialize_then_parse_is_identity(description: sdp.SessionDescription) -> None:
    assert sdp.parse(sdp.serialize(description)) == description


@given(st.binary(max_size=300))
def test_sdp_parse_fails_only_with_sdp_error(data: bytes) -> None:
    with contextlib.suppress(sdp.SdpError):
        sdp.parse(b"v=0\r\n" + data)


@given(st.binary(max_size=100))
def test_rtp_parse_fails_only_with_rtp_error(data: bytes) -> None:
    try:
        packet = rtp.parse(data)
    except rtp.RtpError:
        return
    assert 0 <= packet.payload_type <= 127


@settings(max_examples=300)
@given(st.lists(st.integers(0, len(CAPTURE_5) - 1), min_size=1, max_size=30))
def test_any_reordering_loss_or_repetition_of_one_key_press_is_one_digit(
    order: list[int],
) -> None:
    detector = DtmfDetector(101)
    # Arrivals 10 ms apart: within one press, never a replay of it.
    found = [detector.feed(CAPTURE_5[i], n * 0.01) for n, i in enumerate(order)]
    assert [d for d in found if d] == ["5"]
