"""SUBSCRIBE in, 200 and NOTIFY out, as SIP messages, with captured phone SUBSCRIBEs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hotdesk_sip_edge.blf.dialog_info import CONTENT_TYPE, Dialog
from hotdesk_sip_edge.blf.dialog_info import parse as parse_body
from hotdesk_sip_edge.blf.notify import (
    SubscribeFieldsError,
    build_notify,
    notify_wire,
    subscribe_request,
    subscribe_response,
)
from hotdesk_sip_edge.blf.subscriptions import NotifyToSend, Subscriptions
from hotdesk_sip_edge.sip.headers import Via
from hotdesk_sip_edge.sip.message import SipRequest, SipResponse, parse

PHONES = Path(__file__).parents[2] / "data" / "sip-samples" / "phones"
VIA = Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK-notify-1"),))
CONTACT = "sip:edge@127.0.0.1:5060"


def _request(name: str) -> SipRequest:
    message = parse((PHONES / name).read_bytes())
    assert isinstance(message, SipRequest)
    return message


def _with(request: SipRequest, name: str, value: str | None) -> SipRequest:
    headers = request.headers.copy()
    headers.remove(name)
    if value is not None:
        headers.add(name, value)
    return SipRequest(headers=headers, body=request.body, method=request.method, uri=request.uri)


def _subscribe(request: SipRequest, subs: Subscriptions, ext: str = "211") -> NotifyToSend:
    fields = subscribe_request(
        request, extension=ext, entity_uri=f"sip:{ext}@172.16.16.180", authenticated=True
    )
    outcome = subs.subscribe(fields, now=0)
    assert outcome.notify is not None
    return outcome.notify


def _roundtrip(request: SipRequest) -> SipRequest:
    again = parse(request.serialize())
    assert isinstance(again, SipRequest)
    return again


def test_snom_subscribe_gives_a_new_subscription_request() -> None:
    fields = subscribe_request(
        _request("snom-subscribe.sip"),
        extension="211",
        entity_uri="sip:211@172.16.16.180",
        authenticated=True,
    )
    assert (fields.call_id, fields.from_tag, fields.to_tag, fields.cseq) == (
        "dedccb476ac9-47x5gchyicsw@snomSoft-000413FFFFFF",
        "mynrfel9vl",
        None,
        1,
    )
    assert (fields.event, fields.event_id, fields.expires) == ("dialog", "", 3600)
    assert fields.accept == ("application/dialog-info+xml",)
    assert fields.contact == "sip:snom@172.16.16.34:1346;line=ojn9itpa"
    assert fields.from_uri == "sip:snom@172.16.16.180"
    assert fields.to_uri == "sip:211@172.16.16.180;user=phone"


def test_yealink_subscribe_is_read_as_a_refresh_in_its_dialog() -> None:
    fields = subscribe_request(
        _request("yealink-subscribe.sip"),
        extension="1000",
        entity_uri="sip:1000@10.2.1.48",
        authenticated=True,
    )
    assert (fields.to_tag, fields.cseq, fields.expires) == ("4025601441", 2, 60)


def test_accepted_subscribe_is_answered_200_with_our_tag_contact_and_expires() -> None:
    request = _request("snom-subscribe.sip")
    subs = Subscriptions(["211"], new_tag=lambda: "edge1")
    fields = subscribe_request(
        request, extension="211", entity_uri="sip:211@172.16.16.180", authenticated=True
    )
    response = parse(
        subscribe_response(request, subs.subscribe(fields, now=0), contact=CONTACT).serialize()
    )
    assert isinstance(response, SipResponse)
    assert (response.status, response.to.tag) == (200, "edge1")
    assert response.headers.get("Expires") == "3600"
    assert response.headers.get("Contact") == f"<{CONTACT}>"
    assert response.call_id == request.call_id
    assert response.cseq == request.cseq


def test_too_brief_subscribe_is_answered_423_with_min_expires() -> None:
    request = _with(_request("snom-subscribe.sip"), "Expires", "10")
    subs = Subscriptions(["211"])
    fields = subscribe_request(request, extension="211", entity_uri="sip:211@h", authenticated=True)
    response = subscribe_response(request, subs.subscribe(fields, now=0), contact=CONTACT)
    assert (response.status, response.reason) == (423, "Interval Too Brief")
    assert response.headers.get("Min-Expires") == "60"
    assert response.headers.get("Contact") is None
    assert response.to.tag  # RFC 3261 section 8.2.6.2


def test_notify_goes_to_the_subscriber_contact_within_the_subscription_dialog() -> None:
    subs = Subscriptions(["211"], new_tag=lambda: "edge1")
    notify = _subscribe(_request("snom-subscribe.sip"), subs)
    sent = _roundtrip(build_notify(notify, via=VIA, contact=CONTACT))
    assert (sent.method, sent.uri) == ("NOTIFY", "sip:snom@172.16.16.34:1346;line=ojn9itpa")
    assert sent.from_.raw_uri == "sip:211@172.16.16.180;user=phone"
    assert (sent.from_.tag, sent.to.tag) == ("edge1", "mynrfel9vl")
    assert sent.to.raw_uri == "sip:snom@172.16.16.180"
    assert sent.call_id == "dedccb476ac9-47x5gchyicsw@snomSoft-000413FFFFFF"
    assert str(sent.cseq) == "1 NOTIFY"
    assert sent.headers.get("Event") == "dialog"
    assert sent.headers.get("Subscription-State") == "active;expires=3600"
    assert sent.headers.get("Content-Type") == CONTENT_TYPE
    assert sent.headers.get("Max-Forwards") == "70"
    assert sent.top_via.branch == "z9hG4bK-notify-1"
    assert sent.headers.get("Route") is None
    assert parse_body(sent.body).version == 0


def test_later_notifies_have_increasing_cseq_and_version() -> None:
    subs = Subscriptions(["211"])
    _subscribe(_request("snom-subscribe.sip"), subs)
    call = Dialog(id="1", state="early", call_id="c", direction="recipient")
    (second,) = subs.state_changed("211", [call], now=1)
    (third,) = subs.state_changed("211", [], now=2)
    sent = [_roundtrip(build_notify(n, via=VIA, contact=CONTACT)) for n in (second, third)]
    assert [m.cseq.seq for m in sent] == [2, 3]
    assert [parse_body(m.body).version for m in sent] == [1, 2]
    assert sent[1].headers.get("Subscription-State") == "active;expires=3598"


def test_final_notify_says_terminated_with_the_reason() -> None:
    subs = Subscriptions(["211"])
    _subscribe(_request("snom-subscribe.sip"), subs)
    (final,) = subs.terminate_all(now=5)
    sent = build_notify(final, via=VIA, contact=CONTACT)
    assert sent.headers.get("Subscription-State") == "terminated;reason=deactivated"


def test_loose_route_set_from_record_route_is_sent_as_route_in_order() -> None:
    request = _with(
        _request("snom-subscribe.sip"),
        "Record-Route",
        "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
    )
    notify = _subscribe(request, Subscriptions(["211"]))
    sent = _roundtrip(build_notify(notify, via=VIA, contact=CONTACT))
    assert sent.uri == "sip:snom@172.16.16.34:1346;line=ojn9itpa"
    assert [r.raw_uri for r in sent.routes("Route")] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
    ]


def test_strict_router_becomes_the_request_uri_and_the_target_the_last_route() -> None:
    request = _with(_request("snom-subscribe.sip"), "Record-Route", "<sip:strict.example.com>")
    notify = _subscribe(request, Subscriptions(["211"]))
    sent = _roundtrip(build_notify(notify, via=VIA, contact=CONTACT))
    assert sent.uri == "sip:strict.example.com"
    assert [r.raw_uri for r in sent.routes("Route")] == ["sip:snom@172.16.16.34:1346;line=ojn9itpa"]


def test_event_id_is_kept_in_the_subscription_and_echoed_in_notifies() -> None:
    request = _with(_request("snom-subscribe.sip"), "Event", "dialog;id=7")
    notify = _subscribe(request, Subscriptions(["211"]))
    assert notify.subscription.key.event_id == "7"
    assert build_notify(notify, via=VIA, contact=CONTACT).headers.get("Event") == "dialog;id=7"


@pytest.mark.parametrize(
    ("phone", "header", "value"),
    [
        ("snom-subscribe.sip", None, None),
        ("yealink-subscribe.sip", "To", "<sip:211@172.16.16.180>"),
        ("snom-subscribe.sip", "Record-Route", "<sip:p1.example.com;lr>, <sip:p2;lr>"),
        ("snom-subscribe.sip", "Record-Route", "<sip:strict.example.com>, <sip:p2;lr>"),
        ("snom-subscribe.sip", "Event", "dialog;id=7"),
    ],
)
def test_notifies_rendered_from_the_dialog_wire_are_the_built_requests_byte_for_byte(
    phone: str, header: str | None, value: str | None
) -> None:
    request = _request(phone) if header is None else _with(_request(phone), header, value)
    subs = Subscriptions(["211"])
    first = _subscribe(request, subs)
    wire = notify_wire(first, contact=CONTACT)
    call = Dialog(id="1", state="confirmed", call_id="c", direction="recipient")
    later = [*subs.state_changed("211", [call], now=1), *subs.terminate_all(now=2)]
    for notify in [first, *later]:
        assert wire.fits(notify)
        built = build_notify(notify, via=VIA, contact=CONTACT).serialize()
        assert wire.render(notify, str(VIA)) == built
    assert wire.first_route == (
        _roundtrip(build_notify(first, via=VIA, contact=CONTACT)).headers.get("Route")
    )


def test_a_wire_no_longer_fits_once_a_refresh_moves_the_remote_target() -> None:
    notify = _subscribe(_request("snom-subscribe.sip"), Subscriptions(["211"]))
    wire = notify_wire(notify, contact=CONTACT)
    moved = replace(notify, subscription=replace(notify.subscription, remote_target="sip:x@h"))
    assert wire.fits(notify)
    assert not wire.fits(moved)


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("Event", None, "missing Event"),
        ("Event", "dialog;=x", "malformed Event"),
        ("Contact", None, "Contact"),
        ("From", "<sip:snom@172.16.16.180>", "no tag"),
    ],
)
def test_subscribes_that_cannot_make_a_subscription_are_400(
    header: str, value: str | None, reason: str
) -> None:
    request = _with(_request("snom-subscribe.sip"), header, value)
    with pytest.raises(SubscribeFieldsError, match=reason) as caught:
        subscribe_request(request, extension="211", entity_uri="sip:211@h", authenticated=True)
    assert caught.value.status == 400
