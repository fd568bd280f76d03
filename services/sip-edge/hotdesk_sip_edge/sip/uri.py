"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966).

The parser keeps the user part escaped exactly as received (RFC 3261 §19.1.4 compares
URIs after unescaping; :meth:`SipUri.user_unescaped` gives that form) so a serialized
URI is byte-identical to the one that was parsed.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from dataclasses import dataclass, field, replace

SCHEMES = ("sip", "sips", "tel")

_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+$")
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ); we allow the
# characters real phones send and refuse only what can never be part of a URI.
_FORBIDDEN = re.compile(r"[\s<>\"\x00-\x1f\x7f]")


class UriError(ValueError):
    """The text is not a syntactically valid URI."""


class UnsupportedUriScheme(UriError):
    """The scheme is not sip, sips or tel (answer 416, RFC 3261 §8.2.2.1)."""

    def __init__(self, scheme: str) -> None:
        super().__init__(f"unsupported URI scheme {scheme!r}")
        self.scheme = scheme


Params = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class SipUri:
    """A parsed sip:/sips:/tel: URI. ``host`` is empty for tel URIs (``user`` holds the
    number); IPv6 hosts are stored without their brackets."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    password: str | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = field(default=())

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (case-insensitive), ``""`` for a flag,
        ``None`` when absent."""
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return "" if value is None else value
        return None

    def has_param(self, name: str) -> bool:
        """Whether the URI carries parameter ``name`` (with or without a value)."""
        return self.param(name) is not None

    def user_unescaped(self) -> str:
        """The user part after %-unescaping (RFC 3261 §19.1.4)."""
        return urllib.parse.unquote(self.user or "")

    def host_port(self) -> str:
        """``host[:port]`` with IPv6 brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def with_params(self, params: Params) -> SipUri:
        """A copy with ``params`` replacing the URI parameters."""
        return replace(self, params=params)

    def __str__(self) -> str:
        return serialize_uri(self)


def _parse_params(text: str) -> Params:
    params: list[tuple[str, str | None]] = []
    if not text:
        return ()
    for part in text.split(";"):
        if not part:
            raise UriError("empty URI parameter")
        name, sep, value = part.partition("=")
        if not name or _FORBIDDEN.search(part):
            raise UriError(f"malformed URI parameter {part!r}")
        params.append((name, value if sep else None))
    return tuple(params)


def _parse_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UriError("unterminated IPv6 reference")
        host = text[1:end]
        if not host or not _IPV6_RE.match(host) or ":" not in host:
            raise UriError(f"malformed IPv6 reference {host!r}")
        rest = text[end + 1 :]
    else:
        host, _, port_text = text.partition(":")
        rest = ":" + port_text if _ else ""
        if not host or not _HOST_RE.match(host):
            raise UriError(f"malformed host {host!r}")
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
            raise UriError(f"malformed port in {text!r}")
        port = int(rest[1:])
        if port > 65535:
            raise UriError(f"port {port} out of range")
    return host, port


@functools.lru_cache(maxsize=4096)
def parse_uri(text: str) -> SipUri:
    """Parse a sip, sips or tel URI; raise :class:`UriError` (or
    :class:`UnsupportedUriScheme`) when it is not one."""
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+\-.]*", scheme):
        raise UriError(f"not a URI: {text[:80]!r}")
    lscheme = scheme.lower()
    if lscheme not in SCHEMES:
        raise UnsupportedUriScheme(lscheme)
    if not rest or _FORBIDDEN.search(rest):
        raise UriError(f"malformed URI {text[:80]!r}")
    if lscheme == "tel":
        number, _, ptext = rest.partition(";")
        if not number or "?" in number:
            raise UriError(f"malformed tel URI {text[:80]!r}")
        return SipUri("tel", number, "", None, None, _parse_params(ptext))
    # The user part may hold ';' and '?' (RFC 4475 §3.1.1.2, §3.1.1.9) but the host
    # cannot: the userinfo ends at the first '@' followed by a valid host.
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    while at >= 0:
        candidate = re.split(r"[;?]", rest[at + 1 :], maxsplit=1)[0]
        try:
            _parse_host_port(candidate)
            break
        except UriError:
            at = rest.find("@", at + 1)
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        password = pw if pcolon else None
        if not user:
            raise UriError("empty user part")
    body, qmark, htext = rest.partition("?")
    headers: list[tuple[str, str]] = []
    if qmark:
        for item in htext.split("&"):
            hname, eq, hvalue = item.partition("=")
            if not hname or not eq:
                raise UriError(f"malformed URI header {item!r}")
            headers.append((hname, hvalue))
    hostport, _, ptext = body.partition(";")
    host, port = _parse_host_port(hostport)
    return SipUri(lscheme, user, host, port, password, _parse_params(ptext), tuple(headers))


def serialize_uri(uri: SipUri) -> str:
    """The URI as text (inverse of :func:`parse_uri`)."""
    out = [uri.scheme, ":"]
    if uri.scheme == "tel":
        out.append(uri.user or "")
    else:
        if uri.user is not None:
            out.append(uri.user)
            if uri.password is not None:
                out.append(":" + uri.password)
            out.append("@")
        out.append(uri.host_port())
    for name, value in uri.params:
        out.append(f";{name}" if value is None else f";{name}={value}")
    if uri.headers:
        out.append("?" + "&".join(f"{k}={v}" for k, v in uri.headers))
    return "".join(out)
