"""The BLF fan-out benchmark's subscribers and rounds, against the real edge."""

from __future__ import annotations

from bench.presence.fanout import run, udp_drops
from bench.presence.subscribers import notify_cseq, ok_for

NOTIFY = (
    b"NOTIFY sip:HD0001@127.0.0.1:40000 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:100@127.0.0.1>;tag=ours\r\n"
    b"To: <sip:HD0001@127.0.0.1>;tag=blf0\r\n"
    b"Call-ID: blf-0-40000\r\n"
    b"CSeq: 7 NOTIFY\r\n"
    b"Event: dialog\r\n"
    b"Subscription-State: active;expires=3599\r\n"
    b"Content-Type: application/dialog-info+xml\r\n"
    b"Content-Length: 2\r\n\r\n<>"
)


def test_the_answer_to_a_notify_echoes_its_transaction_headers() -> None:
    assert ok_for(NOTIFY) == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport\r\n"
        b"From: <sip:100@127.0.0.1>;tag=ours\r\n"
        b"To: <sip:HD0001@127.0.0.1>;tag=blf0\r\n"
        b"Call-ID: blf-0-40000\r\n"
        b"CSeq: 7 NOTIFY\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_a_notify_cseq_is_read_and_a_missing_one_is_zero() -> None:
    assert notify_cseq(NOTIFY) == 7
    assert notify_cseq(NOTIFY.replace(b"CSeq: 7 NOTIFY\r\n", b"")) == 0


def test_an_unbound_port_has_no_drops() -> None:
    assert udp_drops(1) == 0


async def test_every_round_reaches_every_subscriber_after_the_change() -> None:
    figures = await run(subscribers=12, rounds=3)
    assert figures["subscribers"] == 12
    for side in ("edge", "floor_sendto"):
        rounds = figures[side]["rounds_ms"]
        assert len(rounds) == 3
        # Every NOTIFY counted for a round arrives after the change that caused it:
        # retransmissions are not counted, and a round is armed only once the edge is
        # ready, so no late NOTIFY of an earlier state can complete it.
        assert all(0 < r["first_ms"] <= r["last_ms"] for r in rounds)
    assert figures["edge"]["p50_ms"] <= figures["edge"]["p99_ms"]
    cpu = figures["edge_cpu"]
    assert 0 < cpu["to_last_notify_p50_ms"] <= cpu["to_last_notify_max_ms"]
    assert cpu["per_change_ms"] > 0
    assert set(figures["edge_stage_costs"]) == {
        "state_changed_us_per_notify",
        "wire_render_us_per_notify",
    }
    assert figures["retransmitted_notifies"] >= 0
    assert figures["notify_bytes"] > 0
