"""SIP messages of the dialog event package: SUBSCRIBE in, 200 and NOTIFY out.

Pure glue between the SIP message types and :mod:`.subscriptions`:
:func:`subscribe_request` reads the fields a SUBSCRIBE carries, :func:`subscribe_response`
answers it, :func:`build_notify` makes the in-dialog NOTIFY request (RFC 6665 section
4.2.2, RFC 3261 section 12.2.1.1) and :func:`notify_wire` the same request as bytes
rendered once per dialog, for fan-outs. The transport and transaction layers send them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sip.headers import HeaderError, Via, get_param, parse_name_addr, parse_params
from ..sip.message import SIP_VERSION, Headers, SipRequest, SipResponse, response_to
from .subscriptions import NotifyToSend, SubscribeOutcome, SubscribeRequest, Subscription

DEFAULT_MAX_FORWARDS = 70


class SubscribeFieldsError(ValueError):
    """A SUBSCRIBE that cannot start or refresh a subscription; answer ``400`` with
    ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.status = 400
        self.reason = f"Bad Request: {reason}"


def _event(value: str | None) -> tuple[str, str]:
    """The package and ``id`` parameter of an ``Event`` header (RFC 6665 section 8.2.1)."""
    if value is None:
        # RFC 6665 section 8.2.1: a SUBSCRIBE names its event package.
        raise SubscribeFieldsError("missing Event header")
    package, _, rest = value.strip().partition(";")
    try:
        params = parse_params(";" + rest if rest else "")
    except HeaderError as exc:
        raise SubscribeFieldsError(f"malformed Event header: {exc}") from exc
    return package.strip(), get_param(params, "id") or ""


def subscribe_request(
    request: SipRequest, *, extension: str, entity_uri: str, authenticated: bool
) -> SubscribeRequest:
    """The subscription fields of a parsed SUBSCRIBE.

    ``extension`` (the watched resource, from the Request-URI) and ``entity_uri`` are
    resolved by the caller, as is ``authenticated`` (the digest check). A refresh (To
    has a tag) is addressed to our Contact, not to the extension: its ``extension`` and
    ``entity_uri`` are ignored, the subscription keeps those it was created with.
    Raises :class:`SubscribeFieldsError` for a SUBSCRIBE that cannot be served.
    """
    if request.method != "SUBSCRIBE":
        raise SubscribeFieldsError(f"{request.method} is not a SUBSCRIBE")
    try:
        from_ = request.from_
        to = request.to
        cseq = request.cseq
        contacts = request.contacts()
        record_route = tuple(str(r) for r in request.routes("Record-Route"))
    except (HeaderError, ValueError) as exc:
        raise SubscribeFieldsError(str(exc)) from exc
    if not from_.tag:
        raise SubscribeFieldsError("From has no tag (RFC 3261 section 8.1.1.3)")
    if not contacts:
        # The Contact is the remote target of our NOTIFYs (RFC 3261 section 12.1.1).
        raise SubscribeFieldsError("a SUBSCRIBE needs a Contact (RFC 3261 section 12.1.1)")
    package, event_id = _event(request.headers.get("Event"))
    expires_text = request.headers.get("Expires")
    if expires_text is not None and not expires_text.strip().isdigit():
        raise SubscribeFieldsError(f"malformed Expires {expires_text[:20]!r}")
    return SubscribeRequest(
        call_id=request.call_id,
        from_tag=from_.tag,
        to_tag=to.tag or None,
        cseq=cseq.seq,
        event=package,
        event_id=event_id,
        extension=extension,
        entity_uri=entity_uri,
        from_uri=from_.raw_uri,
        to_uri=to.raw_uri,
        contact=contacts[0].raw_uri,
        authenticated=authenticated,
        expires=None if expires_text is None else int(expires_text),
        accept=tuple(request.headers.values("Accept")),
        record_route=record_route,
    )


def subscribe_response(
    request: SipRequest, outcome: SubscribeOutcome, *, contact: str
) -> SipResponse:
    """The response to ``request`` for ``outcome``.

    A 200 establishes the subscription dialog, so it carries our tag, our ``contact``
    and the Record-Route set of the request (RFC 3261 section 12.1.1).
    """
    response = response_to(request, outcome.status, outcome.reason, to_tag=outcome.local_tag)
    if 200 <= outcome.status < 300:
        for value in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", value)
        response.headers.add("Contact", f"<{contact}>")
    for name, value in outcome.headers:
        response.headers.add(name, value)
    return response


def _notify_fields(
    sub: Subscription, *, contact: str, content_type: str, max_forwards: int
) -> tuple[str, list[tuple[str, str | None]]]:
    """The Request-URI and the header fields, in order, of every NOTIFY in ``sub``'s
    dialog; None stands for the values each NOTIFY has of its own (Via, CSeq,
    Subscription-State). The one place the NOTIFY layout is written down."""
    request_uri, routes = _target(sub.remote_target, sub.route_set)
    fields: list[tuple[str, str | None]] = [("Via", None), ("Max-Forwards", str(max_forwards))]
    fields += [("Route", route) for route in routes]
    event = "dialog" if not sub.key.event_id else f"dialog;id={sub.key.event_id}"
    fields += [
        ("From", f"<{sub.local_uri}>;tag={sub.key.local_tag}"),
        ("To", f"<{sub.remote_uri}>;tag={sub.key.remote_tag}"),
        ("Call-ID", sub.key.call_id),
        ("CSeq", None),
        ("Contact", f"<{contact}>"),
        ("Event", event),
        ("Subscription-State", None),
        ("Content-Type", content_type),
    ]
    return request_uri, fields


def build_notify(
    notify: NotifyToSend,
    *,
    via: Via,
    contact: str,
    max_forwards: int = DEFAULT_MAX_FORWARDS,
) -> SipRequest:
    """The NOTIFY request for ``notify`` within its subscription's dialog.

    ``via`` is this hop's Via with a fresh branch (the transport layer's), ``contact``
    our Contact URI. The Request-URI and Route set follow RFC 3261 section 12.2.1.1.
    """
    request_uri, fields = _notify_fields(
        notify.subscription,
        contact=contact,
        content_type=notify.content_type,
        max_forwards=max_forwards,
    )
    own = {
        "Via": str(via),
        "CSeq": f"{notify.cseq} NOTIFY",
        "Subscription-State": notify.subscription_state,
    }
    headers = Headers()
    for name, value in fields:
        headers.add(name, own[name] if value is None else value)
    return SipRequest(headers=headers, body=notify.body, method="NOTIFY", uri=request_uri)


def _wire(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class NotifyWire:
    """The wire form of a subscription's NOTIFYs, cut where one NOTIFY differs from
    the next.

    A state change sends one NOTIFY per subscription; building and serializing each
    request whole cost more than sending it. Within a dialog the Request-URI, Route
    set, From, To, Call-ID, Contact, Event and Content-Type stay the same (RFC 3261
    section 12.2.1.1) and are rendered once; :meth:`render` writes in the Via, CSeq,
    Subscription-State and body, byte for byte what :func:`build_notify` serializes.
    """

    remote_target: str
    route_set: tuple[str, ...]
    content_type: str
    request_uri: str
    first_route: str | None
    """The first Route value (where the NOTIFY goes first), None without a route set."""
    parts: tuple[bytes, bytes, bytes, bytes]
    """The text before the Via value, between Via and CSeq number, between CSeq and
    Subscription-State values, and after that up to the Content-Length value."""

    def fits(self, notify: NotifyToSend) -> bool:
        """Whether ``notify`` belongs to the dialog state this was rendered from (a
        refresh may move the remote target, RFC 3261 section 12.2.1.2)."""
        sub = notify.subscription
        return (
            sub.remote_target == self.remote_target
            and sub.route_set == self.route_set
            and notify.content_type == self.content_type
        )

    def render(self, notify: NotifyToSend, via: str) -> bytes:
        """The NOTIFY ``notify`` with ``via`` (this hop's Via value, fresh branch)."""
        before_via, before_cseq, before_state, before_length = self.parts
        body = notify.body
        return b"".join(
            (
                before_via,
                _wire(via),
                before_cseq,
                b"%d" % notify.cseq,
                before_state,
                _wire(notify.subscription_state),
                before_length,
                b"%d\r\n\r\n" % len(body),
                body,
            )
        )


def notify_wire(
    notify: NotifyToSend, *, contact: str, max_forwards: int = DEFAULT_MAX_FORWARDS
) -> NotifyWire:
    """The :class:`NotifyWire` of ``notify``'s subscription, ``contact`` our Contact."""
    sub = notify.subscription
    request_uri, fields = _notify_fields(
        sub, contact=contact, content_type=notify.content_type, max_forwards=max_forwards
    )
    parts: list[str] = []
    text = f"NOTIFY {request_uri} {SIP_VERSION}"
    routes: list[str] = []
    for name, value in fields:
        text += f"\r\n{name}: "
        if value is None:
            parts.append(text)
            text = " NOTIFY" if name == "CSeq" else ""
        else:
            text += value
            if name == "Route":
                routes.append(value)
    parts.append(text + "\r\nContent-Length: ")
    before_via, before_cseq, before_state, before_length = (_wire(p) for p in parts)
    return NotifyWire(
        remote_target=sub.remote_target,
        route_set=sub.route_set,
        content_type=notify.content_type,
        request_uri=request_uri,
        first_route=routes[0] if routes else None,
        parts=(before_via, before_cseq, before_state, before_length),
    )


def _target(remote_target: str, route_set: tuple[str, ...]) -> tuple[str, list[str]]:
    """Request-URI and Route values for an in-dialog request (RFC 3261 section
    12.2.1.1): loose routing when the first route has ``lr``, strict routing (the
    first route as Request-URI, the remote target appended) when it has not."""
    if not route_set:
        return remote_target, []
    first = parse_name_addr(route_set[0])
    if first.uri is not None and first.uri.has_param("lr"):
        return remote_target, list(route_set)
    return first.raw_uri, [*route_set[1:], f"<{remote_target}>"]
