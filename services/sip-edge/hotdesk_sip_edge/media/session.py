"""The media side of one call the edge answers itself: an RTP socket that plays prompts
and hears DTMF.

The SIP side creates a :class:`MediaSession` from the INVITE's SDP offer, puts
:attr:`MediaSession.answer` in its 200 OK, and closes the session when the dialog ends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

from . import dtmf_info, g711, rtp, sdp, wav
from .metrics import RTP_SEND_JITTER, Histogram
from .pacer import FRAME_SAMPLES, FRAME_SECONDS, Pacer, Talkspurt, pacer_of, packets
from .rfc4733 import DtmfDetector

log = logging.getLogger(__name__)

FILE_NOT_FOUND = "file-not-found"


class PromptSource(Protocol):
    """Where prompt audio comes from (the prompt store, a directory, a test)."""

    async def get(self, prompt_id: str) -> bytes | None:
        """Audio for ``prompt_id`` (``en/enter-pin``): a WAV file of 8 kHz mono 16-bit
        PCM or μ-law, or bare 16-bit PCM; ``None`` when there is no such prompt."""
        ...


class NoRtpPort(OSError):
    """Every even port of the configured range is taken (or none can be bound)."""


class MediaAddressError(NoRtpPort):
    """The address to advertise in SDP is no IP literal: answer 503, and fix the
    configuration (the edge checks it at start with :func:`check_media_address`)."""


def check_media_address(host: str) -> str:
    """``host`` if it can stand in an SDP ``c=`` line, else :class:`MediaAddressError`.

    RFC 8866 §5.7 allows a domain name in ``c=``, but phones do not resolve it for
    media, so the edge must advertise an IP address there.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise MediaAddressError(
            f"sip.advertised_host {host!r} is not an IP address: phones need one in the "
            "SDP c= line to send RTP to; set sip.advertised_host to the edge's public IP"
        ) from None
    return host


@dataclass(frozen=True)
class PlayResult:
    """How a :meth:`MediaSession.play` ended."""

    completed: bool
    """False when cut short by DTMF (barge-in), :meth:`~MediaSession.stop_playback`
    or the session closing."""
    missing: list[str] = field(default_factory=list)
    """Prompt ids that were not found; the built-in "file not found" played instead."""


_builtin_file_not_found: bytes | None = None


def builtin_file_not_found() -> bytes:
    """The "File not found" prompt shipped with the edge (WAV bytes)."""
    global _builtin_file_not_found
    if _builtin_file_not_found is None:
        _builtin_file_not_found = (
            resources.files(__package__).joinpath("file-not-found.wav").read_bytes()
        )
    return _builtin_file_not_found


_ENCODED: OrderedDict[tuple[int, bytes], bytes] = OrderedDict()
_ENCODED_MAX = 512


def _encoded(audio: bytes, payload_type: int) -> bytes:
    """Prompt audio in the call's codec; cached, since every call plays the same prompts."""
    key = (payload_type, audio)
    hit = _ENCODED.get(key)
    if hit is not None:
        _ENCODED.move_to_end(key)
        return hit
    payload = wav.to_payload(wav.parse(audio), payload_type)
    _ENCODED[key] = payload
    if len(_ENCODED) > _ENCODED_MAX:
        _ENCODED.popitem(last=False)
    return payload


_SSRC = struct.Struct("!I")


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, session: MediaSession) -> None:
        self.session: MediaSession | None = session

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.session is not None:
            self.session._received(data, addr)


def _no_digit(digit: str, source: str) -> None:
    pass


def _nothing() -> None:
    pass


def _normal_host(host: str) -> str:
    """An address in one spelling (``::ffff:192.0.2.1`` is ``192.0.2.1``), so the
    signalling and media sources compare equal however the socket reports them."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _bind(local_host: str, port_range: tuple[int, int]) -> socket.socket:
    low, high = port_range
    first = low + (low & 1)  # RFC 3550 §11: RTP on an even port, RTCP on the next
    ports = list(range(first, high + 1, 2))
    if not ports:
        raise NoRtpPort(f"RTP port range {low}-{high} holds no even port")
    start = random.randrange(len(ports))
    family = socket.AF_INET6 if ":" in local_host else socket.AF_INET
    for port in ports[start:] + ports[:start]:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((local_host, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        return sock
    raise NoRtpPort(f"every even RTP port in {low}-{high} on {local_host} is in use")


class MediaSession:
    """RTP for one answered call: prompt playback paced at 20 ms, DTMF detection
    (RFC 4733 and SIP INFO), symmetric RTP and a media timeout."""

    answer: bytes
    """The SDP answer for the 200 OK."""
    negotiated: sdp.Negotiated
    local_port: int
    _fields: dict[str, object]
    transport: asyncio.DatagramTransport
    _protocol: _RtpProtocol

    def __init__(self) -> None:
        raise TypeError("use `await MediaSession.open(...)`")

    @classmethod
    async def open(
        cls,
        *,
        offer: bytes,
        local_host: str,
        port_range: tuple[int, int],
        prompts: PromptSource,
        on_dtmf: Callable[[str, str], None],
        on_media_timeout: Callable[[], None],
        media_timeout: float,
        jitter: Histogram = RTP_SEND_JITTER,
        call_id: str = "",
        bind_host: str | None = None,
        peer_hosts: Collection[str] = (),
    ) -> MediaSession:
        """Negotiate ``offer`` and open the RTP socket.

        ``local_host`` is the address advertised in the SDP answer (an IP literal);
        the socket is bound to ``bind_host``, which defaults to ``local_host``. In a
        container or behind NAT the advertised address is not local, so the edge passes
        its SIP listen address (``sip.listen``, e.g. ``0.0.0.0``) as ``bind_host``.

        Raises :class:`~.sdp.NoCommonCodec` (answer 488), :class:`~.sdp.SdpError`
        (answer 400) or :class:`NoRtpPort` (answer 503; :class:`MediaAddressError`
        when ``local_host`` is no IP address). ``on_dtmf(digit, source)``
        gets each digit once, ``source`` being ``rfc4733`` or ``info`` (whichever the
        call used first: digits from the other source are then ignored);
        ``on_media_timeout()`` is called once when no RTP arrived for ``media_timeout``
        seconds. ``jitter`` receives each packet's lateness against its schedule;
        ``call_id`` goes into the session's log lines.

        Symmetric RTP latches only to packets from the offer's ``c=`` address or one of
        ``peer_hosts`` (the edge passes the INVITE's source address, which is what a
        phone behind NAT sends from); packets from anywhere else are neither media nor
        digits, so nobody can hijack the call by sending to its port first.
        """
        parsed = sdp.parse(offer)
        sdp.answer(parsed, local_host=local_host, local_port=1, session_id=0)  # fail early
        check_media_address(local_host)
        sock = _bind(local_host if bind_host is None else bind_host, port_range)
        port = sock.getsockname()[1]
        session_id = random.getrandbits(31)
        answer, negotiated = sdp.answer(
            parsed, local_host=local_host, local_port=port, session_id=session_id
        )
        self = object.__new__(cls)
        self._setup(negotiated, prompts, on_dtmf, on_media_timeout, media_timeout, jitter)
        self._peer_hosts = frozenset(
            _normal_host(h) for h in (negotiated.remote_host, *peer_hosts)
        ) - {"0.0.0.0", "::"}
        self._fields = {"call_id": call_id, "local_port": port}
        self.answer = sdp.serialize(answer)
        self.local_port = port
        loop = asyncio.get_running_loop()
        self._protocol = _RtpProtocol(self)
        transport, _ = await loop.create_datagram_endpoint(lambda: self._protocol, sock=sock)
        self.transport = transport
        self._watch = loop.call_at(self._last_rx + media_timeout, self._check_media)
        return self

    def _setup(
        self,
        negotiated: sdp.Negotiated,
        prompts: PromptSource,
        on_dtmf: Callable[[str, str], None],
        on_media_timeout: Callable[[], None],
        media_timeout: float,
        jitter: Histogram,
    ) -> None:
        self.negotiated = negotiated
        self._prompts = prompts
        self._on_dtmf = on_dtmf
        self._on_media_timeout = on_media_timeout
        self._media_timeout = media_timeout
        self._jitter = jitter
        self._loop = asyncio.get_running_loop()
        self._dtmf_payload_type = negotiated.dtmf_payload_type or -1
        self._detector = DtmfDetector(self._dtmf_payload_type)
        self._pacer: Pacer = pacer_of(self._loop)
        self._spurt: Talkspurt | None = None
        self._trusted_host: str | None = None
        """The last source host found among the peer hosts (skips the address check)."""
        # A held or port-0 stream has nowhere to send until the phone's RTP shows one.
        holding = negotiated.remote_port == 0 or negotiated.remote_host in ("0.0.0.0", "::")
        self.remote: tuple[str, int] | None = (
            None if holding else (negotiated.remote_host, negotiated.remote_port)
        )
        self.remote_learned = False
        self.remote_ssrc: int | None = None
        # RFC 3550 §5.1: random initial sequence number, timestamp and SSRC.
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts_origin = random.getrandbits(32)
        self._clock_origin = self._loop.time()
        self._last_ts: int | None = None
        self._last_rx = self._loop.time()
        self._watch: asyncio.TimerHandle | None = None
        self._play_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._barge_in = False
        self._closed = False
        self._dtmf_source: str | None = None
        self._peer_hosts: frozenset[str] = frozenset()
        self._foreign_packets = 0
        self._other_source_logged = False

    # --- receiving ------------------------------------------------------------------
    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        # The fixed header is read in place: a phone sends 50 audio packets a second
        # for the whole call, and only telephone-events need the full parse.
        if len(data) < 12 or data[0] >> 6 != rtp.RTP_VERSION:
            return  # noise: not media
        payload_type = data[1] & 0x7F
        if 72 <= payload_type <= 76:
            return  # RTCP sent to the RTP port (RFC 5761 §4): not media
        host = addr[0]
        if host != self._trusted_host:
            if _normal_host(host) not in self._peer_hosts:
                self._foreign_packets += 1
                if self._foreign_packets == 1:
                    log.warning(
                        "RTP from an address that is not the call's peer ignored",
                        extra={**self._fields, "source": host},
                    )
                return
            self._trusted_host = host
        ssrc = _SSRC.unpack_from(data, 8)[0]
        source = (host, addr[1])
        if not self.remote_learned:
            # Symmetric RTP (RFC 4961): answer to where the phone's packets come from,
            # which is what gets through a NAT, not the address its SDP advertised.
            self.remote, self.remote_ssrc, self.remote_learned = source, ssrc, True
        elif source != self.remote:
            if ssrc != self.remote_ssrc:
                return  # another sender on our port: neither media nor digits of this call
            self.remote = source  # the phone's NAT binding changed: follow it
        else:
            self.remote_ssrc = ssrc  # a sender may change SSRC (RFC 3550 §8.2)
        self._last_rx = now = self._loop.time()
        if payload_type != self._dtmf_payload_type:
            return
        try:
            packet = rtp.parse(data)
        except rtp.RtpError:
            return
        digit = self._detector.feed(packet, now)
        if digit is not None:
            self._digit(digit, "rfc4733")

    def dtmf_from_info(self, content_type: str, body: bytes) -> None:
        """A digit from a SIP INFO request, delivered like an RFC 4733 one.

        Raises :class:`~.dtmf_info.DtmfInfoError` when the body carries no digit.
        """
        self._digit(dtmf_info.parse(content_type, body), "info")

    def _digit(self, digit: str, source: str) -> None:
        # A phone may send each key both as RFC 4733 events and as SIP INFO; the first
        # source heard decides for the whole call, so no key press counts twice.
        if self._dtmf_source is None:
            self._dtmf_source = source
        elif source != self._dtmf_source:
            if not self._other_source_logged:
                self._other_source_logged = True
                log.info(
                    "DTMF from a second source ignored",
                    extra={**self._fields, "source": source, "using": self._dtmf_source},
                )
            return
        if self._barge_in:
            self._interrupt()
        self._on_dtmf(digit, source)

    def _check_media(self) -> None:
        self._watch = None
        if self._closed:
            return
        deadline = self._last_rx + self._media_timeout
        if self._loop.time() >= deadline:
            log.info("media timeout", extra=self._fields)
            self._on_media_timeout()
            return
        self._watch = self._loop.call_at(deadline, self._check_media)

    # --- playing --------------------------------------------------------------------
    async def play(self, prompt_ids: list[str], *, barge_in: bool = True) -> PlayResult:
        """Play ``prompt_ids`` one after the other as one talkspurt.

        A DTMF digit stops playback when ``barge_in``. A prompt that is not found is
        replaced by the built-in "file not found" prompt and logged as an error. Plays
        queue behind each other.
        """
        async with self._play_lock:
            if self._closed:
                return PlayResult(completed=False)
            # Cleared before the prompts are fetched, so a stop that comes meanwhile counts.
            self._stop.clear()
            missing: list[str] = []
            chunks: list[bytes] = []
            pt = self.negotiated.payload_type
            for prompt_id in prompt_ids:
                audio = await self._prompts.get(prompt_id)
                if audio is not None:
                    try:
                        chunks.append(_encoded(audio, pt))
                        continue
                    except (wav.WavError, g711.G711Error) as exc:
                        log.error(
                            "prompt audio unplayable",
                            extra={**self._fields, "prompt_id": prompt_id, "error": str(exc)},
                        )
                else:
                    log.error("prompt not found", extra={**self._fields, "prompt_id": prompt_id})
                missing.append(prompt_id)
                chunks.append(_encoded(builtin_file_not_found(), pt))
            self._barge_in = barge_in
            try:
                completed = await self._send(b"".join(chunks))
            finally:
                self._barge_in = False
            return PlayResult(completed=completed, missing=missing)

    async def play_silence(self, seconds: float) -> None:
        """Send ``seconds`` of silence. Before a BYE this pushes the last prompt's final
        packets out of the phone's jitter buffer, which some phones only play out while
        packets keep arriving."""
        async with self._play_lock:
            if self._closed:
                return
            frames = max(1, round(seconds / FRAME_SECONDS))
            self._stop.clear()
            silence = bytes([g711.silence(self.negotiated.payload_type)]) * FRAME_SAMPLES
            await self._send(silence * frames, marker=False)

    def stop_playback(self) -> None:
        """Cut the current playback short (it returns ``completed=False``)."""
        self._interrupt()

    def _interrupt(self) -> None:
        self._stop.set()
        if self._spurt is not None:
            self._spurt.cut()

    async def _send(self, payload: bytes, *, marker: bool = True) -> bool:
        if not payload:
            return True
        if self._stop.is_set() or self._closed:
            return False
        first_due = self._pacer.next_due()
        timestamp = self._talkspurt_timestamp(first_due)
        spurt = Talkspurt(
            self,
            packets(
                payload,
                payload_type=self.negotiated.payload_type,
                sequence=self._seq,
                timestamp=timestamp,
                ssrc=self.ssrc,
                marker=marker,
                pad=g711.silence(self.negotiated.payload_type),
            ),
            self._jitter,
            self._loop.create_future(),
        )
        self._spurt = spurt
        self._pacer.start(spurt)
        try:
            completed = await spurt.done
        finally:
            spurt.cut()  # also when the caller was cancelled: the pacer drops it
            self._spurt = None
            sent = spurt.next
            # Sequence numbers and timestamps go on from the last packet that left.
            self._seq = (self._seq + sent) & 0xFFFF
            if sent:
                self._last_ts = (timestamp + (sent - 1) * FRAME_SAMPLES) & 0xFFFFFFFF
        return completed and not self._stop.is_set()

    def _talkspurt_timestamp(self, now: float) -> int:
        # RFC 3550 §5.1: the timestamp follows the sampling clock through silences, so
        # a new talkspurt starts where the clock is now, in whole frames.
        elapsed = int((now - self._clock_origin) * 8000) // FRAME_SAMPLES * FRAME_SAMPLES
        ts = (self._ts_origin + elapsed) & 0xFFFFFFFF
        if self._last_ts is not None and (ts - self._last_ts) & 0xFFFFFFFF >= 0x80000000:
            ts = (self._last_ts + FRAME_SAMPLES) & 0xFFFFFFFF
        if self._last_ts is not None and ts == self._last_ts:
            ts = (ts + FRAME_SAMPLES) & 0xFFFFFFFF
        return ts

    async def close(self) -> None:
        """Stop playback, the media timeout and the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._interrupt()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.transport.close()
        # Nothing of the session leads back to its owner (the IVR bridge) any more, so
        # both go by reference counting, not in a garbage collection that holds up the
        # other calls' RTP.
        self._protocol.session = None
        self._on_dtmf = _no_digit
        self._on_media_timeout = _nothing
