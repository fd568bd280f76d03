"""G.711, SDP offer/answer and SIP INFO DTMF bodies."""

from __future__ import annotations

import struct
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotdesk_sip_edge.media import dtmf_info, g711, sdp

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the standard library's G.711 (until 3.13): a reference to compare to

SNOM_OFFER = (
    # The SDP of a snom desk phone's INVITE (addresses as the phone sent them).
    b"v=0\r\no=root 1531570429 1531570429 IN IP4 10.0.2.250\r\ns=call\r\n"
    b"c=IN IP4 10.0.2.250\r\nt=0 0\r\nm=audio 54762 RTP/AVP 0 8 9 2 3 18 4 101\r\n"
    b"a=rtpmap:0 pcmu/8000\r\na=rtpmap:8 pcma/8000\r\na=rtpmap:9 g722/8000\r\n"
    b"a=rtpmap:2 g726-32/8000\r\na=rtpmap:3 gsm/8000\r\na=rtpmap:18 g729/8000\r\n"
    b"a=rtpmap:4 g723/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))


def test_ulaw_and_alaw_match_the_reference_for_every_16_bit_sample() -> None:
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    codes = bytes(range(256))
    assert g711.ulaw_decode(codes) == audioop.ulaw2lin(codes, 2)
    assert g711.alaw_decode(codes) == audioop.alaw2lin(codes, 2)


@given(st.binary(max_size=400))
def test_decode_then_encode_returns_the_same_codes(codes: bytes) -> None:
    # μ-law has two codes for zero (0x7F, 0xFF); A-law none: every other code is exact.
    codes_u = codes.replace(b"\x7f", b"\xff")
    assert g711.ulaw_encode(g711.ulaw_decode(codes_u)) == codes_u
    assert g711.alaw_encode(g711.alaw_decode(codes)) == codes


def test_silence_codes_decode_to_zero() -> None:
    assert g711.ulaw_decode(bytes([g711.silence(0)])) == b"\x00\x00"
    assert g711.alaw_decode(bytes([g711.silence(8)])) in (b"\x08\x00", b"\xf8\xff")


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(g711.G711Error, match="even length"):
        g711.encode(b"\x00\x01\x02", 0)


def offer(formats: str, rtpmaps: str = "", c: str = "c=IN IP4 192.0.2.10\r\n") -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\n"
        + c
        + f"t=0 0\r\nm=audio 40000 RTP/AVP {formats}\r\n"
        + rtpmaps
    ).encode()


def test_snom_offer_is_answered_with_pcmu_and_its_telephone_event_type() -> None:
    body = SNOM_OFFER
    answer, negotiated = sdp.answer(
        sdp.parse(body), local_host="127.0.0.1", local_port=20000, session_id=7
    )
    assert (negotiated.payload_type, negotiated.dtmf_payload_type) == (0, 101)
    assert (negotiated.remote_host, negotiated.remote_port) == ("10.0.2.250", 54762)
    text = sdp.serialize(answer).decode()
    assert "m=audio 20000 RTP/AVP 0 101\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\n" in text
    assert "c=IN IP4 127.0.0.1\r\n" in text
    assert text.endswith("a=sendrecv\r\n")


def test_the_offers_order_decides_between_pcma_and_pcmu() -> None:
    _, n = sdp.answer(
        sdp.parse(offer("8 0 96", "a=rtpmap:96 telephone-event/8000\r\n")),
        local_host="127.0.0.1",
        local_port=20002,
        session_id=1,
    )
    assert (n.codec, n.dtmf_payload_type) == ("PCMA", 96)


def test_an_offer_without_g711_is_refused_with_no_common_codec() -> None:
    with pytest.raises(sdp.NoCommonCodec):
        sdp.answer(
            sdp.parse(offer("9 18", "a=rtpmap:9 G722/8000\r\n")),
            local_host="127.0.0.1",
            local_port=20000,
            session_id=1,
        )


def test_other_streams_are_rejected_in_place_with_port_zero() -> None:
    body = offer("0") + b"m=video 40002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"
    answer, n = sdp.answer(sdp.parse(body), local_host="127.0.0.1", local_port=20000, session_id=1)
    assert [(m.media, m.port) for m in answer.media] == [("audio", 20000), ("video", 0)]
    assert n.dtmf_payload_type is None


def test_a_media_level_connection_wins_over_the_session_level_one() -> None:
    body = offer("0", "c=IN IP4 198.51.100.7\r\n")
    _, n = sdp.answer(sdp.parse(body), local_host="127.0.0.1", local_port=20000, session_id=1)
    assert n.remote_host == "198.51.100.7"


def test_a_sendonly_offer_gets_a_recvonly_answer() -> None:
    answer, _ = sdp.answer(
        sdp.parse(offer("0", "a=sendonly\r\n")),
        local_host="127.0.0.1",
        local_port=20000,
        session_id=1,
    )
    assert answer.media[0].direction() == "recvonly"


def test_parse_then_serialize_keeps_what_was_read() -> None:
    body = offer("0 101", "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")
    again = sdp.serialize(sdp.parse(body))
    assert sdp.parse(again) == sdp.parse(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "v=0"),
        (b"v=0\r\ns=-\r\n", "no o= line"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\nc=IN IP4\r\n", "bad c= line"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio x RTP/AVP 0\r\n", "bad port"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\nbogus\r\n", "bad SDP line"),
    ],
)
def test_malformed_sdp_is_refused_naming_the_problem(body: bytes, reason: str) -> None:
    with pytest.raises(sdp.SdpError, match=reason):
        sdp.parse(body)


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay; charset=utf-8", b"Signal= #\nDuration=100", "#"),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=160", "#"),
        ("application/dtmf", b"5", "5"),
        ("Application/DTMF", b"*\r\n", "*"),
    ],
)
def test_info_bodies_yield_their_digit(content_type: str, body: bytes, digit: str) -> None:
    assert dtmf_info.parse(content_type, body) == digit


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/dtmf-relay", b"Duration=160"),
        ("application/dtmf", b"x"),
        ("text/plain", b"5"),
    ],
)
def test_info_bodies_without_a_digit_are_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(dtmf_info.DtmfInfoError):
        dtmf_info.parse(content_type, body)


def test_info_bodies_round_trip() -> None:
    assert dtmf_info.serialize_relay("5") == b"Signal=5\r\nDuration=160\r\n"
    assert dtmf_info.parse("application/dtmf", dtmf_info.serialize_dtmf("#")) == "#"


@pytest.mark.parametrize("proto", ["RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF"])
def test_an_srtp_only_offer_is_refused_not_answered_as_plain_rtp(proto: str) -> None:
    body = offer("0 8").replace(b"RTP/AVP", proto.encode())
    body += (
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n"
    )
    with pytest.raises(sdp.NoCommonCodec) as refused:
        sdp.answer(sdp.parse(body), local_host="127.0.0.1", local_port=20000, session_id=1)
    assert isinstance(refused.value, sdp.UnsupportedTransport)
    assert proto in str(refused.value)


@pytest.mark.parametrize("proto", ["RTP/AVP", "RTP/AVPF"])
def test_plain_rtp_profiles_are_answered_in_kind(proto: str) -> None:
    body = offer("0").replace(b"RTP/AVP", proto.encode())
    answer, _ = sdp.answer(sdp.parse(body), local_host="127.0.0.1", local_port=20000, session_id=1)
    assert answer.media[0].proto == proto


def test_a_plain_rtp_stream_beside_an_srtp_one_is_the_one_accepted() -> None:
    body = offer("0").replace(b"RTP/AVP", b"RTP/SAVP") + b"m=audio 40002 RTP/AVP 8\r\n"
    answer, negotiated = sdp.answer(
        sdp.parse(body), local_host="127.0.0.1", local_port=20000, session_id=1
    )
    assert [m.port for m in answer.media] == [0, 20000]
    assert (negotiated.codec, negotiated.remote_port) == ("PCMA", 40002)
