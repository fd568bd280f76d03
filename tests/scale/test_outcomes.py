"""What SIPp's short message log says of each call, and which outcome a call gets."""

from __future__ import annotations

from bench.scale.load import parse_short_messages
from bench.scale.observe import CallTrace
from bench.scale.run import classify

LOG = "\n".join(
    "\t".join(fields)
    for fields in [
        ("d", "t", "100.0", "S", "1-9@h", "CSeq:1 REGISTER", "REGISTER sip:h SIP/2.0"),
        ("d", "t", "100.1", "R", "1-9@h", "CSeq:1 REGISTER", "SIP/2.0 401 Unauthorized"),
        ("d", "t", "100.2", "S", "1-9@h", "CSeq:2 REGISTER", "REGISTER sip:h SIP/2.0"),
        ("d", "t", "100.3", "R", "1-9@h", "CSeq:2 REGISTER", "SIP/2.0 200 OK"),
        ("d", "t", "100.4", "S", "1-9@h", "CSeq:1 INVITE", "INVITE sip:*77*100*@h SIP/2.0"),
        ("d", "t", "100.5", "R", "1-9@h", "CSeq:1 INVITE", "SIP/2.0 407 Proxy Auth"),
        ("d", "t", "100.6", "R", "1-9@h", "CSeq:2 INVITE", "SIP/2.0 200 OK"),
        ("d", "t", "104.0", "R", "1-9@h", "CSeq:7 BYE", "BYE sip:HD0000@h SIP/2.0"),
        ("d", "t", "104.1", "S", "1-9@h", "CSeq:7 BYE", "SIP/2.0 200 OK"),
        # The edge's check-sync NOTIFY: not a call SIPp placed.
        ("d", "t", "104.2", "R", "n@h", "CSeq:1 NOTIFY", "NOTIFY sip:HD0000@h SIP/2.0"),
        ("d", "t", "105.0", "S", "2-9@h", "CSeq:1 REGISTER", "REGISTER sip:h SIP/2.0"),
        ("d", "t", "105.1", "R", "2-9@h", "CSeq:1 REGISTER", "SIP/2.0 401 Unauthorized"),
        ("d", "t", "105.2", "S", "2-9@h", "CSeq:2 REGISTER", "REGISTER sip:h SIP/2.0"),
        ("d", "t", "110.0", "R", "2-9@h", "CSeq:2 REGISTER", "SIP/2.0 503 Service Unavailable"),
        # SIPp's own BYE for a call it aborted, refused by the edge: not the call's error.
        ("d", "t", "111.0", "S", "3-9@h", "CSeq:1 REGISTER", "REGISTER sip:h SIP/2.0"),
        ("d", "t", "140.0", "S", "3-9@h", "CSeq:2 BYE", "BYE sip:HD0002@h SIP/2.0"),
        ("d", "t", "140.1", "R", "3-9@h", "CSeq:2 BYE", "SIP/2.0 481 Call Does Not Exist"),
    ]
)


def test_the_short_message_log_gives_each_placed_call_its_answers() -> None:
    calls = parse_short_messages(LOG)
    assert set(calls) == {"1-9@h", "2-9@h", "3-9@h"}
    ok, refused, aborted = calls["1-9@h"], calls["2-9@h"], calls["3-9@h"]
    assert ok.answered
    assert ok.bye
    assert ok.sip_error is None
    assert (ok.started, ok.ended) == (100.0, 104.1)
    assert refused.sip_error == 503
    assert not refused.answered
    assert aborted.sip_error is None
    assert not aborted.bye


def _trace(*plays: tuple[str, list[str]], played: tuple[str, ...] = ()) -> CallTrace:
    trace = CallTrace("c")
    trace.plays = list(plays)
    trace.played = [(p, True) for p in played]
    return trace


def test_outcomes() -> None:
    calls = parse_short_messages(LOG)
    ok, refused, aborted = calls["1-9@h"], calls["2-9@h"], calls["3-9@h"]
    confirmed = _trace(("p1", ["en/enter-pin"]), ("p2", ["en/logged-in"]))
    assert classify(ok, confirmed, edge_killed_at=None) == ("completed", ["en/logged-in"])
    failed = _trace(("p1", ["en/enter-pin"]), ("p2", ["en/error"]))
    assert classify(ok, failed, edge_killed_at=None) == ("spoken_error", ["en/error"])
    # No IVR answered: the edge played its own error prompt (a play no IVR asked for).
    alone = _trace(("p1", ["en/enter-pin"]), played=("p1", ""))
    assert classify(ok, alone, edge_killed_at=None) == ("spoken_error", ["<edge error prompt>"])
    assert classify(refused, None, edge_killed_at=None) == ("sip_error", ["SIP 503"])
    # Silence: cut off with its edge if that edge was killed while the call was up.
    assert classify(aborted, None, edge_killed_at=120.0)[0] == "died_with_edge"
    assert classify(aborted, None, edge_killed_at=None)[0] == "unclean"
    assert classify(aborted, None, edge_killed_at=100.0)[0] == "unclean"
    # A BYE without any prompt on record is not a clean failure either.
    assert classify(ok, _trace(), edge_killed_at=None)[0] == "unclean"
