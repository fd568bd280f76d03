"""Structured SIP header values (RFC 3261 §20, §25.1).

Each header type has ``parse_*`` (raising :class:`HeaderError`, a ``ValueError``) and a
``__str__`` that serializes it. Parsers tolerate the linear white space RFC 3261 §7.3.1
allows around separators (``SIP / 2.0 / UDP``, ``tag = x``), as the RFC 4475 §3.1.1.1
torture message demands.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .uri import SipUri, UnsupportedUriScheme, UriError, parse_uri


class HeaderError(ValueError):
    """A header value does not follow its grammar."""


Params = tuple[tuple[str, str | None], ...]

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_WS = " \t"


def is_token(text: str) -> bool:
    """RFC 3261 §25.1 ``token``."""
    return bool(_TOKEN_RE.match(text))


_LIST_SPECIAL_RE = re.compile(r'["\\<>,]')


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value (RFC 3261 §7.3.1), ignoring commas inside
    quoted strings and ``<...>``. Empty elements are kept so callers can reject them."""
    # Fast paths: most values have no comma, or nothing that could hide one.
    if "," not in value:
        return [value.strip(_WS)]
    if '"' not in value and "<" not in value:
        return [item.strip(_WS) for item in value.split(",")]
    # Jump from one special character to the next instead of walking every character
    # (digest credentials are long and quote every value).
    items: list[str] = []
    start = 0
    quoted = False
    angle = False
    search = _LIST_SPECIAL_RE.search
    match = search(value)
    while match is not None:
        i = match.start()
        ch = value[i]
        nxt = i + 1
        if quoted:
            if ch == "\\":
                nxt = i + 2
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            items.append(value[start:i].strip(_WS))
            start = i + 1
        match = search(value, nxt)
    items.append(value[start:].strip(_WS))
    return items


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``text[i] == '"'``; return it with its quotes
    and the index after it."""
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == '"':
            return text[i : j + 1], j + 1
        j += 1
    raise HeaderError("unterminated quoted string")


# One ``;name[=value]`` generic-param: the common shapes only. Anything else is left to
# the character-by-character parser below, which also words the errors.
_PARAM_RE = re.compile(
    r"[ \t]*;[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*"
    r"(?:=[ \t]*(\"(?:[^\"\\]|\\[\s\S])*\"|[A-Za-z0-9\-.!%*_+`'~:\[\]/@]+))?"
    r"(?=[ \t;]|\Z)"
)


def parse_params(text: str) -> Params:
    """Parse ``;name[=value]`` generic parameters (RFC 3261 §25.1 ``generic-param``).

    ``text`` starts at the first ``;`` (or is empty). Quoted values keep their quotes.
    """
    params: list[tuple[str, str | None]] = []
    n = len(text)
    pos = 0
    match = _PARAM_RE.match
    while True:
        found = match(text, pos)
        if found is None:
            break
        params.append((found.group(1), found.group(2)))
        pos = found.end()
    if pos == n or not text[pos:].strip(_WS):
        return tuple(params)
    return _parse_params_slowly(text)


def _parse_params_slowly(text: str) -> Params:
    params: list[tuple[str, str | None]] = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in _WS:
            i += 1
        if i >= n:
            return tuple(params)
        if text[i] != ";":
            raise HeaderError(f"expected ';' in parameters {text[:60]!r}")
        i += 1
        while i < n and text[i] in _WS:
            i += 1
        start = i
        while i < n and text[i] not in _WS + ";=":
            i += 1
        name = text[start:i]
        if not is_token(name):
            raise HeaderError(f"malformed parameter name {name!r}")
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in _WS:
                i += 1
            if i < n and text[i] == '"':
                value, i = _read_quoted(text, i)
            else:
                start = i
                while i < n and text[i] not in _WS + ";":
                    i += 1
                value = text[start:i]
                # RFC 3261 §25.1 gen-value: token / host / quoted-string; IPv6
                # references and tokens cover what phones send.
                if not value or not re.fullmatch(r"[A-Za-z0-9\-.!%*_+`'~:\[\]/@]+", value):
                    raise HeaderError(f"malformed value for parameter {name!r}")
            params.append((name, value))
        else:
            params.append((name, None))


def serialize_params(params: Params) -> str:
    """``;name=value`` text for ``params``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def get_param(params: Params, name: str) -> str | None:
    """Value of parameter ``name`` (case-insensitive), ``""`` for a flag, else None."""
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


def set_param(params: Params, name: str, value: str | None) -> Params:
    """``params`` with ``name`` set to ``value`` (replacing or appending)."""
    lname = name.lower()
    out = [(k, v) for k, v in params if k.lower() != lname]
    out.append((name, value))
    return tuple(out)


def unquote(value: str) -> str:
    """Strip the quotes of a quoted-string and resolve its backslash escapes."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.DOTALL)
    return value


def quote(value: str) -> str:
    """A quoted-string holding ``value``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- Via (RFC 3261 §20.42, RFC 3581) -------------------------------------------------

_VIA_RE = re.compile(
    r"^SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(.*)$",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value. ``host`` keeps IPv6 brackets as sent."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @property
    def branch(self) -> str | None:
        """The transaction branch (RFC 3261 §8.1.1.7)."""
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        """The ``received`` address a server added (RFC 3261 §18.2.1)."""
        return get_param(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The filled-in ``rport`` (RFC 3581 §4); None when absent or empty."""
        value = get_param(self.params, "rport")
        return int(value) if value else None

    @property
    def wants_rport(self) -> bool:
        """Whether the client asked for symmetric response routing (RFC 3581 §3)."""
        return get_param(self.params, "rport") is not None

    def with_param(self, name: str, value: str | None) -> Via:
        """A copy with parameter ``name`` set."""
        return Via(self.transport, self.host, self.port, set_param(self.params, name, value))

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport.upper()} {self.host}{port}{serialize_params(self.params)}"


PARSE_CACHE_SIZE = 4096
"""Parsed header values kept for reuse: a message's headers are validated when it is
parsed and read again by the handlers, and Tos, Froms and URIs repeat across requests.
Only immutable results are cached."""


def parse_via(value: str) -> list[Via]:
    """Parse a (possibly comma-separated) Via header value."""
    return list(_parse_via(value))


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_via(value: str) -> tuple[Via, ...]:
    vias: list[Via] = []
    for item in split_list(value):
        match = _VIA_RE.match(item)
        if not match:
            raise HeaderError(f"malformed Via {item[:80]!r}")
        transport, host, port_text, rest = match.groups()
        port = int(port_text) if port_text else None
        if port is not None and port > 65535:
            raise HeaderError(f"Via port {port} out of range")
        params = parse_params(rest)
        for key, pvalue in params:
            if (
                key.lower() == "rport"
                and pvalue is not None
                and (not pvalue.isdigit() or int(pvalue) > 65535)
            ):
                raise HeaderError(f"malformed rport {pvalue!r}")
        vias.append(Via(transport.upper(), host, port, params))
    return tuple(vias)


# --- name-addr / addr-spec (From, To, Contact, Route, Path; RFC 3261 §20.10) ----------


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``display-name <uri>;params`` or a bare ``uri;params``.

    ``uri`` is parsed when its scheme is sip/sips/tel; other schemes (RFC 4475 §3.3.4)
    keep ``uri`` as None and the text in ``raw_uri``.
    """

    raw_uri: str
    display: str | None = None
    params: Params = ()
    uri: SipUri | None = None

    @property
    def tag(self) -> str | None:
        """The dialog tag (RFC 3261 §19.3)."""
        return get_param(self.params, "tag")

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter (RFC 3261 §20.10)."""
        value = get_param(self.params, "expires")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def instance(self) -> str | None:
        """The ``+sip.instance`` value without its quotes (RFC 5626 §4.1)."""
        value = get_param(self.params, "+sip.instance")
        return unquote(value) if value else None

    @property
    def reg_id(self) -> str | None:
        """The ``reg-id`` parameter (RFC 5626 §4.2)."""
        return get_param(self.params, "reg-id")

    def with_param(self, name: str, value: str | None) -> NameAddr:
        """A copy with header parameter ``name`` set."""
        return NameAddr(self.raw_uri, self.display, set_param(self.params, name, value), self.uri)

    def __str__(self) -> str:
        display = "" if self.display is None else quote(self.display) + " "
        return f"{display}<{self.raw_uri}>{serialize_params(self.params)}"


def _uri_or_none(text: str) -> SipUri | None:
    try:
        return parse_uri(text)
    except UnsupportedUriScheme:
        return None
    except UriError as exc:
        raise HeaderError(str(exc)) from exc


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse_name_addr(value: str) -> NameAddr:
    """Parse one name-addr or addr-spec with its header parameters."""
    text = value.strip(_WS)
    if not text:
        raise HeaderError("empty address")
    display: str | None = None
    i = 0
    if text[0] == '"':
        quoted, i = _read_quoted(text, 0)
        display = unquote(quoted)
        while i < len(text) and text[i] in _WS:
            i += 1
        if i >= len(text) or text[i] != "<":
            raise HeaderError("quoted display name without <uri>")
    lt = text.find("<", i)
    if lt >= 0:
        if display is None:
            name = text[:lt].strip(_WS)
            if name:
                # RFC 3261 §25.1: an unquoted display-name is *(token LWS).
                if not all(is_token(word) for word in name.split()):
                    raise HeaderError(f"display name {name!r} must be quoted")
                display = " ".join(name.split())
        gt = text.find(">", lt)
        if gt < 0:
            raise HeaderError("unterminated <uri>")
        raw = text[lt + 1 : gt].strip(_WS)
        params = parse_params(text[gt + 1 :])
    else:
        # addr-spec form: parameters after the URI belong to the header
        # (RFC 3261 §20.10, RFC 4475 §3.3.12).
        semi = text.find(";")
        raw = text if semi < 0 else text[:semi]
        raw = raw.strip(_WS)
        params = parse_params(text[semi:] if semi >= 0 else "")
        if "," in raw or "?" in raw:
            raise HeaderError(f"address {raw!r} needs <> around it")
    if not raw or any(ch in raw for ch in " \t"):
        raise HeaderError(f"malformed URI {raw!r}")
    return NameAddr(raw, display, params, _uri_or_none(raw))


def parse_contacts(value: str) -> list[NameAddr] | None:
    """Parse a Contact header value; ``None`` stands for ``Contact: *``."""
    if value.strip(_WS) == "*":
        return None
    items = split_list(value)
    if any(not item for item in items):
        raise HeaderError("empty Contact value")
    contacts = [parse_name_addr(item) for item in items]
    for contact in contacts:
        expires = get_param(contact.params, "expires")
        if expires is not None and (not expires.isdigit() or int(expires) > 2**32 - 1):
            raise HeaderError(f"malformed Contact expires {expires!r}")
    return contacts


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Parse Route, Record-Route or Path values (RFC 3261 §20.30, RFC 3327)."""
    items = split_list(value)
    if any(not item for item in items):
        raise HeaderError("empty route value")
    return [parse_name_addr(item) for item in items]


# --- CSeq (RFC 3261 §20.16) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CSeq:
    """Sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse_cseq(value: str) -> CSeq:
    """Parse ``CSeq``; the number must fit 32 bits below 2**31 (RFC 3261 §8.1.1.5)."""
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
        raise HeaderError(f"malformed CSeq {value[:60]!r}")
    if len(parts[0]) > 10 or int(parts[0]) >= 2**31:
        raise HeaderError("CSeq number out of range")
    return CSeq(int(parts[0]), parts[1])


# --- Authorization / WWW-Authenticate (RFC 3261 §25.1, RFC 7616 §3) --------------------


def parse_auth(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Digest a=b, c="d"`` into the scheme and a dict of unquoted parameters
    with lower-case names."""
    scheme, params = _parse_auth(value)
    return scheme, dict(params)


# One ``name=value`` auth-param and its separator, in the shapes clients send; anything
# else is left to the general parser below, which also words the errors.
_AUTH_PARAM_RE = re.compile(
    r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*=[ \t]*"
    r"(?:\"((?:[^\"\\]|\\[\s\S])*)\"|([^ \t\",<>]*))[ \t]*(?:,|\Z)"
)


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_auth(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    text = value.strip(_WS)
    scheme, _, rest = text.partition(" ")
    if not scheme or not is_token(scheme):
        raise HeaderError("malformed authentication scheme")
    params: dict[str, str] = {}
    pos = 0
    n = len(rest)
    match = _AUTH_PARAM_RE.match
    while pos < n:
        found = match(rest, pos)
        if found is None:
            if rest[pos:].strip(_WS):
                return scheme, _parse_auth_params(rest)
            break
        name, quoted, plain = found.groups()
        if quoted is None:
            params[name.lower()] = plain
        else:
            params[name.lower()] = _unescape(quoted) if "\\" in quoted else quoted
        pos = found.end()
    return scheme, tuple(params.items())


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def _parse_auth_params(rest: str) -> tuple[tuple[str, str], ...]:
    params: dict[str, str] = {}
    for item in split_list(rest):
        if not item:
            continue
        name, eq, raw = item.partition("=")
        name = name.strip(_WS).lower()
        raw = raw.strip(_WS)
        if not eq or not is_token(name):
            raise HeaderError(f"malformed auth parameter {item[:60]!r}")
        if raw.startswith('"'):
            quoted, end = _read_quoted(raw, 0)
            if raw[end:].strip(_WS):
                raise HeaderError(f"junk after quoted value of {name!r}")
            params[name] = unquote(quoted)
        else:
            params[name] = raw
    return tuple(params.items())
