"""SIP requests and responses: parse and serialize (RFC 3261 §7, §25).

:func:`parse` takes one complete message (a UDP datagram, or a frame cut by
:func:`frame_length` from a stream) and returns a :class:`SipRequest` or
:class:`SipResponse`, or raises :class:`SipParseError` — never anything else — telling
the caller which response code fits and whether a response can be sent at all.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from .headers import (
    CSeq,
    HeaderError,
    NameAddr,
    Via,
    is_token,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
    split_list,
)
from .uri import UnsupportedUriScheme, UriError, parse_uri

SIP_VERSION = "SIP/2.0"
DEFAULT_MAX_MESSAGE_BYTES = 65535

# RFC 3261 §7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(),
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authentication-Info",
        "Authorization",
        "Call-Info",
        "Content-Disposition",
        "Content-Language",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Timestamp",
        "Unsupported",
        "User-Agent",
        "Warning",
        "WWW-Authenticate",
    )
}
# Headers that may appear only once (RFC 3261 §7.3.1 and Table 2); two values make the
# message ambiguous and it is answered 400 (RFC 4475 §3.3.8, §3.3.9).
SINGLE_VALUE = frozenset(
    {"Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type", "Expires"}
)
# Headers whose value is a comma-separated list (RFC 3261 §7.3.1).
LIST_HEADERS = frozenset(
    {
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Path",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Allow-Events",
    }
)
_VERSION_RE = re.compile(r"^SIP/(\d+)\.(\d+)$", re.IGNORECASE)
_MAX_EXPIRES = 2**32 - 1


@functools.lru_cache(maxsize=4096)
def canonical_name(name: str) -> str:
    """The long, canonically capitalised form of a header name."""
    lname = name.lower()
    if lname in COMPACT_FORMS:
        return COMPACT_FORMS[lname]
    return _CANONICAL.get(lname, name)


class SipParseError(ValueError):
    """The bytes are not an acceptable SIP message.

    ``status``/``reason`` is the response to send (400, 413, 505, 513);
    ``partial`` is the request as far as it was understood when it carries what a
    response needs (Via, From, To, Call-ID, CSeq), else None: then the message is
    dropped and counted instead (RFC 3261 §18.1.2 / §18.2.1).
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        reason: str = "Bad Request",
        partial: SipRequest | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.partial = partial

    @property
    def can_respond(self) -> bool:
        """Whether a response can be built and routed for this message."""
        return self.partial is not None


@dataclass(slots=True)
class Headers:
    """Ordered header fields as ``(canonical name, value)`` pairs."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or None."""
        cname = _HEADER_NAMES.get(name) or canonical_name(name)
        for key, value in self.items:
            if key == cname:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every field value of ``name`` in order, each as sent (not comma-split)."""
        cname = _HEADER_NAMES.get(name) or canonical_name(name)
        return [value for key, value in self.items if key == cname]

    def values(self, name: str) -> list[str]:
        """Every comma-separated element of ``name`` across its fields."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(split_list(value))
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every field of ``name`` by one with ``value`` (kept in place of the
        first one, else appended)."""
        cname = canonical_name(name)
        for i, (key, _) in enumerate(self.items):
            if key == cname:
                self.items[i] = (cname, value)
                self.items[:] = [
                    item for j, item in enumerate(self.items) if j <= i or item[0] != cname
                ]
                return
        self.items.append((cname, value))

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a field, before all others of its name when ``first``."""
        cname = canonical_name(name)
        if first:
            for i, (key, _) in enumerate(self.items):
                if key == cname:
                    self.items.insert(i, (cname, value))
                    return
        self.items.append((cname, value))

    def remove(self, name: str) -> None:
        """Remove every field of ``name``."""
        cname = canonical_name(name)
        self.items[:] = [item for item in self.items if item[0] != cname]

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers(list(self.items))


@dataclass(slots=True)
class SipMessage:
    """What requests and responses share: headers and body."""

    headers: Headers
    body: bytes = b""

    @property
    def call_id(self) -> str:
        """The Call-ID (present in every parsed request)."""
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq."""
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def vias(self) -> list[Via]:
        """Every Via, topmost first."""
        out: list[Via] = []
        for value in self.headers.get_all("Via"):
            out.extend(parse_via(value))
        return out

    @property
    def top_via(self) -> Via:
        """The topmost Via."""
        return parse_via(self.headers.get("Via") or "")[0]

    @property
    def from_(self) -> NameAddr:
        """The From address."""
        return parse_name_addr(self.headers.get("From") or "")

    @property
    def to(self) -> NameAddr:
        """The To address."""
        return parse_name_addr(self.headers.get("To") or "")

    def contacts(self) -> list[NameAddr] | None:
        """The Contact addresses (None for ``*``)."""
        out: list[NameAddr] = []
        for value in self.headers.get_all("Contact"):
            parsed = parse_contacts(value)
            if parsed is None:
                return None
            out.extend(parsed)
        return out

    def routes(self, name: str) -> list[NameAddr]:
        """Route, Record-Route or Path entries in order."""
        out: list[NameAddr] = []
        for value in self.headers.get_all(name):
            out.extend(parse_name_addr_list(value))
        return out

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers.items:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass(slots=True)
class SipRequest(SipMessage):
    """A request. ``uri`` is the Request-URI text as received."""

    method: str = ""
    uri: str = ""

    def serialize(self) -> bytes:
        """Wire form; Content-Length always matches the body."""
        return self._serialize(f"{self.method} {self.uri} {SIP_VERSION}")


@dataclass(slots=True)
class SipResponse(SipMessage):
    """A response."""

    status: int = 0
    reason: str = ""

    def serialize(self) -> bytes:
        """Wire form; Content-Length always matches the body."""
        return self._serialize(f"{SIP_VERSION} {self.status} {self.reason}")


def serialize(message: SipRequest | SipResponse) -> bytes:
    """Wire form of ``message``."""
    return message.serialize()


def _split_head(data: bytes) -> tuple[bytes, int | None]:
    """The header section and the body offset (None: no empty line was found)."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(data))
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[:crlf], crlf + 4
    if lf >= 0:
        return data[:lf], lf + 2
    return data, None


def _unfold(head: str) -> list[str]:
    """Header lines with continuation lines (leading SP/HT) joined (RFC 3261 §7.3.1)."""
    if head.count("\n") == head.count("\r\n") and "\n " not in head and "\n\t" not in head:
        # Every line ends in CRLF and none is folded: what nearly every phone sends.
        return head.split("\r\n")
    lines: list[str] = []
    for raw in re.split(r"\r?\n", head):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1] + " " + raw.strip(" \t")
        else:
            lines.append(raw)
    return lines


def frame_length(
    buffer: bytes | bytearray, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> int | None:
    """Length of the first complete message in a stream buffer (RFC 3261 §18.3), or None
    when more bytes are needed. Raises :class:`SipParseError` when the framing cannot be
    known (no or bad Content-Length, oversized header): the connection must be closed.
    """
    data = bytes(buffer[: max_bytes + 4])
    head, body_at = _split_head(data)
    if body_at is None:
        if len(buffer) > max_bytes:
            raise SipParseError("header section too large", 513, "Message Too Large")
        return None
    length: int | None = None
    for line in _unfold(head.decode("latin-1"))[1:]:
        name, colon, value = line.partition(":")
        if colon and canonical_name(name.strip(" \t")) == "Content-Length":
            text = value.strip(" \t")
            if not text.isdigit() or len(text) > 9 or (length is not None and length != int(text)):
                raise SipParseError("bad Content-Length on a stream")
            length = int(text)
    if length is None:
        raise SipParseError("Content-Length is mandatory on a stream (RFC 3261 §18.3)")
    if body_at + length > max_bytes:
        # The header section fit but the declared body does not: RFC 3261 §21.4.11.
        raise SipParseError("body too large", 413, "Request Entity Too Large")
    total = body_at + length
    return total if len(buffer) >= total else None


def parse(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, stream: bool = False
) -> SipRequest | SipResponse:
    """Parse one SIP message.

    Over a datagram, a missing Content-Length means the body is the rest of the
    datagram and octets beyond Content-Length are discarded (RFC 3261 §18.3,
    RFC 4475 §3.1.1.8); a Content-Length beyond the datagram is an error (§3.1.2.2).
    """
    head_bytes, body_at = _split_head(data)
    if body_at is None:
        # A datagram ends where it ends: treat the end as the end of the header section
        # (RFC 4475 §3.1.2.15 note) — a stream framer never hands over such bytes.
        body_at = len(data)
    head = head_bytes.decode("utf-8", "surrogateescape").lstrip("\r\n")
    lines = _unfold(head)
    start = lines[0] if lines else ""
    items: list[tuple[str, str]] = []
    index: Index = {}
    bad_header: str | None = None
    names = _HEADER_NAMES
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            bad_header = bad_header or f"malformed header line {line[:60]!r}"
            continue
        cname = names.get(name)
        if cname is None:
            stripped = name.strip(" \t")
            if not is_token(stripped):
                bad_header = bad_header or f"malformed header line {line[:60]!r}"
                continue
            cname = canonical_name(stripped)
            if len(names) < _HEADER_NAMES_SIZE:
                names[name] = cname
        value = value.strip(" \t")
        items.append((cname, value))
        known = index.get(cname)
        if known is None:
            index[cname] = [value]
        else:
            known.append(value)
    headers = Headers(items)
    if start.startswith("SIP/"):
        return _parse_response(start, headers, index, data, body_at, bad_header, max_bytes, stream)
    return _parse_request(start, headers, index, data, body_at, bad_header, max_bytes, stream)


_HEADER_NAMES: dict[str, str] = {}
"""Header names as written (``Via``, ``v``, ``CALL-ID``) -> canonical name: the names
phones send repeat, so each is checked and canonicalised once."""
_HEADER_NAMES_SIZE = 4096


Index = dict[str, list[str]]


def _respondable(index: Index) -> bool:
    try:
        return all(index.get(h, [""])[0] for h in ("Via", "From", "To", "Call-ID", "CSeq")) and (
            bool(parse_via(index["Via"][0]))
        )
    except HeaderError:
        return False


def _body(data: bytes, body_at: int, index: Index, stream: bool) -> bytes:
    values = index.get("Content-Length")
    if not values:
        if stream:
            raise SipParseError("Content-Length is mandatory on a stream (RFC 3261 §18.3)")
        return data[body_at:]
    if len(values) > 1 and len(set(values)) > 1:
        raise SipParseError("conflicting Content-Length values")
    text = values[0]
    if not text.isdigit() or len(text) > 9:
        raise SipParseError(f"malformed Content-Length {text[:20]!r}")
    length = int(text)
    if body_at + length > len(data):
        raise SipParseError("Content-Length exceeds the message")
    return data[body_at : body_at + length]


_ONE_VALUE = ("CSeq", "From", "To", "Max-Forwards")
"""Single-value headers whose one field may not carry a list either."""


def _check_common(index: Index) -> None:
    for name in SINGLE_VALUE:
        values = index.get(name)
        if values is None:
            continue
        if len(values) > 1 and name != "Content-Length":
            raise SipParseError(f"more than one {name} header")
        if name in _ONE_VALUE and "," in values[0] and len(split_list(values[0])) > 1:
            raise SipParseError(f"more than one {name} value")
    get = index.get
    try:
        for value in get("Via", ()):
            parse_via(value)
        for name in ("From", "To"):
            for address in get(name, ()):
                parse_name_addr(address)
        for value in get("Contact", ()):
            parse_contacts(value)
        for name in ("Route", "Record-Route", "Path"):
            for value in get(name, ()):
                parse_name_addr_list(value)
        for cseq in get("CSeq", ()):
            parse_cseq(cseq)
    except (HeaderError, UriError) as exc:
        raise SipParseError(str(exc)) from exc
    max_forwards = get("Max-Forwards", [None])[0]
    if max_forwards is not None and (
        not max_forwards.isdigit() or len(max_forwards) > 5 or int(max_forwards) > 255
    ):
        raise SipParseError(f"malformed Max-Forwards {max_forwards[:20]!r}")
    expires = get("Expires", [None])[0]
    if expires is not None and (
        not expires.isdigit() or len(expires) > 10 or int(expires) > _MAX_EXPIRES
    ):
        raise SipParseError(f"malformed Expires {expires[:20]!r}")


def _parse_request(
    start: str,
    headers: Headers,
    index: Index,
    data: bytes,
    body_at: int,
    bad_header: str | None,
    max_bytes: int,
    stream: bool,
) -> SipRequest:
    partial = SipRequest(headers, b"", "", "")
    respond = _respondable(index)

    def fail(message: str, status: int = 400, reason: str = "Bad Request") -> SipParseError:
        return SipParseError(message, status, reason, partial if respond else None)

    # RFC 3261 §7.1: Method SP Request-URI SP SIP-Version, single spaces (RFC 4475
    # §3.1.2.8, §3.1.2.9).
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise fail(f"malformed request line {start[:80]!r}")
    method, uri_text, version = parts
    if not is_token(method):
        raise fail(f"malformed method {method[:40]!r}")
    partial.method = method
    partial.uri = uri_text
    if not _VERSION_RE.match(version):
        raise fail(f"malformed SIP version {version[:20]!r}")
    if version.upper() != SIP_VERSION:
        raise fail(f"SIP version {version} not supported", 505, "Version Not Supported")
    if len(data) > max_bytes:
        raise fail("message too large", 513, "Message Too Large")
    if bad_header:
        raise fail(bad_header)
    try:
        uri = parse_uri(uri_text)
    except UnsupportedUriScheme:
        uri = None  # parses; the application answers 416 (RFC 4475 §3.3.2)
    except UriError as exc:
        raise fail(f"malformed Request-URI: {exc}") from exc
    if uri is not None and uri.headers:
        raise fail("headers are not allowed in a Request-URI (RFC 3261 §19.1.5)")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if not index.get(name, [""])[0]:
            raise fail(f"missing {name} header")
    try:
        _check_common(index)
    except SipParseError as exc:
        raise fail(str(exc)) from exc
    if parse_cseq(index["CSeq"][0]).method != method:
        raise fail("CSeq method does not match the request method (RFC 3261 §8.1.1.5)")
    try:
        partial.body = _body(data, body_at, index, stream)
    except SipParseError as exc:
        raise fail(str(exc)) from exc
    return partial


def _parse_response(
    start: str,
    headers: Headers,
    index: Index,
    data: bytes,
    body_at: int,
    bad_header: str | None,
    max_bytes: int,
    stream: bool,
) -> SipResponse:
    # Responses are never answered (RFC 3261 §18.1.2): every error here means "drop".
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != SIP_VERSION:
        raise SipParseError(f"unsupported version {version[:20]!r} in a response")
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise SipParseError(f"malformed status code {code[:20]!r}")
    if len(data) > max_bytes:
        raise SipParseError("response too large", 513, "Message Too Large")
    if bad_header:
        raise SipParseError(bad_header)
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if not index.get(name, [""])[0]:
            raise SipParseError(f"missing {name} header in a response")
    _check_common(index)
    body = _body(data, body_at, index, stream)
    return SipResponse(headers, body, int(code), reason)


def response_to(
    request: SipRequest, status: int, reason: str, *, to_tag: str | None = None
) -> SipResponse:
    """A response to ``request`` (RFC 3261 §8.2.6): Via, From, Call-ID and CSeq copied,
    To copied with ``to_tag`` added when it has none (never on 100 Trying)."""
    copied: dict[str, list[tuple[str, str]]] = {name: [] for name in _COPIED}
    for item in request.headers.items:
        fields = copied.get(item[0])
        if fields is not None:
            fields.append(item)
    if status == 100:
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            copied["Timestamp"] = [("Timestamp", timestamp)]
    elif to_tag is not None and request.to.tag is None:
        # RFC 3261 §8.2.6.2: the request's To with a tag added.
        copied["To"] = [("To", f"{copied['To'][0][1]};tag={to_tag}")]
    items: list[tuple[str, str]] = []
    for fields in copied.values():
        items += fields
    return SipResponse(Headers(items), b"", status, reason)


_COPIED = ("Via", "From", "To", "Call-ID", "CSeq")
"""The header fields a response copies from its request (RFC 3261 §8.2.6.2)."""
