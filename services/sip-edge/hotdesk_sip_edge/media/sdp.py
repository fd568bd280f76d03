"""SDP parsing and serialisation (RFC 8866, which obsoletes RFC 4566) and the offer/answer
model (RFC 3264) for the calls the edge answers itself.

The edge only ever answers: it takes a phone's offer, picks G.711 μ-law (PCMU, static
payload type 0) or A-law (PCMA, 8) in the offer's order of preference (RFC 3264 §6.1),
and adds ``telephone-event/8000`` (RFC 4733) under the payload type the offer used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PCMU = 0
PCMA = 8
AUDIO_CODECS: dict[int, str] = {PCMU: "PCMU", PCMA: "PCMA"}
"""Static payload types we can send (RFC 3551 §6, Table 4)."""


class SdpError(ValueError):
    """An SDP body that cannot be parsed."""


class NoCommonCodec(SdpError):
    """The offer has no audio stream with PCMU or PCMA: answer 488 Not Acceptable Here
    (RFC 3264 §6)."""


class UnsupportedTransport(NoCommonCodec):
    """The offer's audio asks for a transport we do not speak (SRTP's ``RTP/SAVP`` or
    ``RTP/SAVPF``, DTLS, …): answer 488 like any offer we cannot accept, rather than
    send plain RTP to a phone expecting encrypted media (RFC 3711 §3)."""


PLAIN_RTP_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF"})
"""The transports we answer: plain RTP (RFC 3551) and its feedback profile (RFC 4585)."""


@dataclass
class Media:
    """One ``m=`` section with its attributes (RFC 8866 §5.14)."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    """The address of a media-level ``c=`` line, if any."""
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    def attribute(self, name: str) -> list[str]:
        """Values of every ``a=name:value`` (empty string for a flag attribute)."""
        return [v or "" for n, v in self.attributes if n == name]

    def rtpmap(self) -> dict[int, tuple[str, int]]:
        """Payload type → (encoding name, clock rate) from ``a=rtpmap`` (RFC 8866 §6.6)."""
        out: dict[int, tuple[str, int]] = {}
        for value in self.attribute("rtpmap"):
            try:
                pt_text, enc = value.split(None, 1)
                name, rate, *_ = [*enc.split("/"), "0"]
                out[int(pt_text)] = (name, int(rate))
            except ValueError as exc:
                raise SdpError(f"bad a=rtpmap value {value!r}") from exc
        return out

    def direction(self) -> str:
        """``sendrecv`` unless the media section says otherwise (RFC 8866 §6.7)."""
        for name, _ in self.attributes:
            if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                return name
        return "sendrecv"


@dataclass
class SessionDescription:
    """A parsed SDP body. Unknown lines are kept so a round trip loses nothing we read."""

    origin: str
    session_name: str = "-"
    connection: str | None = None
    """The address of the session-level ``c=`` line."""
    timing: str = "0 0"
    media: list[Media] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)
    """Session-level lines we do not interpret (``b=``, ``i=``, …), in order."""


def _connection_address(value: str) -> str:
    # RFC 8866 §5.7: c=<nettype> <addrtype> <connection-address>[/ttl][/n]
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value!r}")
    return parts[2].split("/")[0]


def _attribute(value: str) -> tuple[str, str | None]:
    name, sep, rest = value.partition(":")
    return (name, rest if sep else None)


def parse(body: bytes) -> SessionDescription:
    """Parse an SDP body. Raises :class:`SdpError` naming the offending line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    # RFC 8866 §5: lines end in CRLF, but parsers should accept a bare LF too.
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    origin: str | None = None
    sdp = SessionDescription(origin="")
    current: Media | None = None
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 4:
                raise SdpError(f"bad m= line {line!r}")
            try:
                port = int(parts[1].split("/")[0])
            except ValueError as exc:
                raise SdpError(f"bad port in {line!r}") from exc
            current = Media(media=parts[0], port=port, proto=parts[2], formats=parts[3:])
            sdp.media.append(current)
        elif kind == "c":
            address = _connection_address(value)
            if current is None:
                sdp.connection = address
            else:
                current.connection = address
        elif kind == "a":
            (sdp.attributes if current is None else current.attributes).append(_attribute(value))
        elif current is not None:
            continue  # media-level b=, i=, k=: not needed to answer
        elif kind == "o":
            origin = value
        elif kind == "s":
            sdp.session_name = value
        elif kind == "t":
            sdp.timing = value
        else:
            sdp.other.append((kind, value))
    if origin is None:
        raise SdpError("SDP has no o= line")
    sdp.origin = origin
    return sdp


def serialize(sdp: SessionDescription) -> bytes:
    """The SDP body, CRLF line endings, in the order RFC 8866 §5 requires."""
    lines = ["v=0", f"o={sdp.origin}", f"s={sdp.session_name}"]
    lines += [f"{k}={v}" for k, v in sdp.other if k in ("i", "u", "e", "p")]
    if sdp.connection is not None:
        lines.append(f"c=IN {_addrtype(sdp.connection)} {sdp.connection}")
    lines += [f"{k}={v}" for k, v in sdp.other if k == "b"]
    lines.append(f"t={sdp.timing}")
    lines += [f"{k}={v}" for k, v in sdp.other if k not in ("i", "u", "e", "p", "b")]
    lines += [_attr_line(a) for a in sdp.attributes]
    for m in sdp.media:
        lines.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}")
        if m.connection is not None:
            lines.append(f"c=IN {_addrtype(m.connection)} {m.connection}")
        lines += [_attr_line(a) for a in m.attributes]
    return ("\r\n".join(lines) + "\r\n").encode()


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _attr_line(attribute: tuple[str, str | None]) -> str:
    name, value = attribute
    return f"a={name}" if value is None else f"a={name}:{value}"


@dataclass(frozen=True)
class Negotiated:
    """What an answer settled: the codec we send, DTMF's payload type, where to send."""

    payload_type: int
    """0 (PCMU) or 8 (PCMA)."""
    dtmf_payload_type: int | None
    """The offer's ``telephone-event/8000`` payload type; ``None`` if it had none."""
    remote_host: str
    remote_port: int

    @property
    def codec(self) -> str:
        return AUDIO_CODECS[self.payload_type]


def _direction_answer(offered: str) -> str:
    # RFC 3264 §6.1: sendonly ↔ recvonly; we need to hear DTMF, so we never go sendonly.
    return {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
        offered, "sendrecv"
    )


def answer(
    offer: SessionDescription, *, local_host: str, local_port: int, session_id: int
) -> tuple[SessionDescription, Negotiated]:
    """Answer ``offer`` (RFC 3264 §6) for a G.711 + telephone-event session.

    The first audio stream whose formats include PCMU or PCMA is accepted with the
    first of them in the offer's order; every other stream is rejected with port 0 and
    kept in place, as RFC 3264 §6 requires. Only plain RTP (``RTP/AVP``, ``RTP/AVPF``)
    is accepted. Raises :class:`NoCommonCodec` when no audio stream offers G.711,
    :class:`UnsupportedTransport` (a ``NoCommonCodec``) when the only audio is SRTP.
    """
    chosen: tuple[int, Media, int, int | None] | None = None
    refused_protos: list[str] = []
    for index, m in enumerate(offer.media):
        if m.media != "audio" or m.port == 0:
            continue
        if m.proto.upper() not in PLAIN_RTP_PROFILES:
            refused_protos.append(m.proto)
            continue
        rtpmap = m.rtpmap()
        codec = _first_g711(m.formats, rtpmap)
        if codec is None:
            continue
        dtmf = next(
            (
                pt
                for pt, (name, rate) in rtpmap.items()
                if name.lower() == "telephone-event" and rate == 8000 and str(pt) in m.formats
            ),
            None,
        )
        chosen = (index, m, codec, dtmf)
        break
    if chosen is None:
        if refused_protos:
            raise UnsupportedTransport(
                f"the offer's audio uses {', '.join(sorted(set(refused_protos)))}; "
                "only plain RTP/AVP or RTP/AVPF with PCMU or PCMA is accepted"
            )
        raise NoCommonCodec("the offer has no audio stream with PCMU or PCMA")
    index, offered, codec, dtmf = chosen
    remote_host = offered.connection or offer.connection
    if remote_host is None:
        raise SdpError("the accepted media stream has no c= address")
    media: list[Media] = []
    for i, m in enumerate(offer.media):
        if i != index:
            # RFC 3264 §6: a rejected stream keeps its place with port 0.
            media.append(Media(media=m.media, port=0, proto=m.proto, formats=m.formats[:1]))
            continue
        formats = [str(codec)] + ([str(dtmf)] if dtmf is not None else [])
        attributes: list[tuple[str, str | None]] = [
            ("rtpmap", f"{codec} {AUDIO_CODECS[codec]}/8000")
        ]
        if dtmf is not None:
            attributes += [("rtpmap", f"{dtmf} telephone-event/8000"), ("fmtp", f"{dtmf} 0-15")]
        attributes += [("ptime", "20"), (_direction_answer(m.direction()), None)]
        media.append(
            Media(
                media="audio",
                port=local_port,
                proto=m.proto,
                formats=formats,
                attributes=attributes,
            )
        )
    sdp = SessionDescription(
        origin=f"hotdesk {session_id} {session_id} IN {_addrtype(local_host)} {local_host}",
        session_name="hotdesk",
        connection=local_host,
        media=media,
    )
    return sdp, Negotiated(
        payload_type=codec,
        dtmf_payload_type=dtmf,
        remote_host=remote_host,
        remote_port=offered.port,
    )


def _first_g711(formats: list[str], rtpmap: dict[int, tuple[str, int]]) -> int | None:
    for fmt in formats:
        try:
            pt = int(fmt)
        except ValueError:
            continue
        # Static types need no rtpmap (RFC 3551 §6); dynamic ones named PCMU/PCMA count too,
        # but we answer with the static number, which every phone understands.
        name = rtpmap.get(pt, (AUDIO_CODECS.get(pt, ""), 8000))[0].upper()
        if name == "PCMU":
            return PCMU
        if name == "PCMA":
            return PCMA
    return None
