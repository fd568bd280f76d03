"""The registrar's pure core: binding rules of RFC 3261 §10.3, Path and instances."""

from __future__ import annotations

import pytest

from hotdesk_sip_edge.location import Binding
from hotdesk_sip_edge.registrar import RegisterLimits, RegisterRefused, apply_register
from hotdesk_sip_edge.sip.message import SipRequest, parse
from hotdesk_sip_edge.sip.transport import Source

SOURCE = Source("UDP", "127.0.0.1", 5062)
LIMITS = RegisterLimits(min_expires=60, max_expires=3600, default_expires=3600)


def _register(*headers: str, cseq: int = 1, call_id: str = "c1") -> SipRequest:
    text = (
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
        "From: <sip:HD0001@127.0.0.1>;tag=a\r\nTo: <sip:HD0001@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
        + "".join(h + "\r\n" for h in headers)
        + "Content-Length: 0\r\n\r\n"
    )
    message = parse(text.encode())
    assert isinstance(message, SipRequest)
    return message


def test_multiple_contacts_are_bound_with_their_own_expiry_capped_at_the_maximum() -> None:
    request = _register(
        "Contact: <sip:HD0001@127.0.0.1:5062>;expires=120, <sip:HD0001@127.0.0.1:5064>",
        "Expires: 99999",
    )
    bindings = apply_register(request, [], now=1000.0, source=SOURCE, limits=LIMITS)
    assert [(b.uri, b.expires_at) for b in bindings] == [
        ("sip:HD0001@127.0.0.1:5062", 1120.0),
        ("sip:HD0001@127.0.0.1:5064", 1000.0 + 3600),
    ]


def test_too_brief_expiry_is_refused_with_min_expires() -> None:
    request = _register("Contact: <sip:HD0001@127.0.0.1:5062>;expires=5")
    with pytest.raises(RegisterRefused) as info:
        apply_register(request, [], now=0.0, source=SOURCE, limits=LIMITS)
    assert info.value.status == 423
    assert info.value.headers == (("Min-Expires", "60"),)


def test_expires_zero_removes_only_that_contact() -> None:
    first = _register(
        "Contact: <sip:HD0001@127.0.0.1:5062>, <sip:HD0001@127.0.0.1:5064>", "Expires: 600"
    )
    bindings = apply_register(first, [], now=0.0, source=SOURCE, limits=LIMITS)
    remove = _register("Contact: <sip:HD0001@127.0.0.1:5064>;expires=0", cseq=2)
    after = apply_register(remove, bindings, now=1.0, source=SOURCE, limits=LIMITS)
    assert [b.uri for b in after] == ["sip:HD0001@127.0.0.1:5062"]


def test_star_needs_expires_zero() -> None:
    with pytest.raises(RegisterRefused) as info:
        apply_register(
            _register("Contact: *", "Expires: 60"), [], now=0.0, source=SOURCE, limits=LIMITS
        )
    assert info.value.status == 400
    assert (
        apply_register(
            _register("Contact: *", "Expires: 0"), [], now=0.0, source=SOURCE, limits=LIMITS
        )
        == []
    )


def test_out_of_order_cseq_for_the_same_call_id_is_refused() -> None:
    request = _register("Contact: <sip:HD0001@127.0.0.1:5062>", cseq=5)
    bindings = apply_register(request, [], now=0.0, source=SOURCE, limits=LIMITS)
    stale = _register("Contact: <sip:HD0001@127.0.0.1:5062>", cseq=4)
    with pytest.raises(RegisterRefused) as info:
        apply_register(stale, bindings, now=1.0, source=SOURCE, limits=LIMITS)
    assert info.value.status == 500


def test_same_instance_and_reg_id_replaces_the_old_contact() -> None:
    instance = '+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>";reg-id=1'
    first = _register(f"Contact: <sip:HD0001@127.0.0.1:5062>;{instance}", call_id="a")
    bindings = apply_register(first, [], now=0.0, source=SOURCE, limits=LIMITS)
    moved = _register(f"Contact: <sip:HD0001@127.0.0.1:6000>;{instance}", call_id="b")
    after = apply_register(moved, bindings, now=1.0, source=SOURCE, limits=LIMITS)
    assert [b.uri for b in after] == ["sip:HD0001@127.0.0.1:6000"]
    assert after[0].instance == "<urn:uuid:00000000-0000-0000-0000-000000000001>"
    assert after[0].reg_id == "1"


def test_path_is_stored_with_the_binding() -> None:
    request = _register("Path: <sip:127.0.0.1:7000;lr>", "Contact: <sip:HD0001@127.0.0.1:5999>")
    bindings = apply_register(request, [], now=0.0, source=SOURCE, limits=LIMITS)
    assert bindings[0].path == ["<sip:127.0.0.1:7000;lr>"]


def test_expired_bindings_are_dropped_on_the_next_register() -> None:
    old = Binding(
        contact="<sip:x@127.0.0.1>", uri="sip:x@127.0.0.1", expires_at=5.0, call_id="o", cseq=1
    )
    request = _register("Contact: <sip:HD0001@127.0.0.1:5062>")
    after = apply_register(request, [old], now=10.0, source=SOURCE, limits=LIMITS)
    assert [b.uri for b in after] == ["sip:HD0001@127.0.0.1:5062"]
