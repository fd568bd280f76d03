"""One 20 ms clock for every RTP stream the edge sends.

A timer per call per packet costs a future, a timer handle and a task wake-up every
20 ms for each call, and hundreds of such timers drift against each other. Instead the
process keeps one :class:`Pacer` per event loop: every 20 ms tick it sends the next
packet of every playing :class:`Talkspurt` in one pass. A talkspurt's packets are built
whole before it starts (headers written into one buffer, RFC 3550 §5.1), so a tick
does no more per packet than a ``sendto`` of ready bytes and a clock read.

That is still ~12 us a packet (the ``sendto`` system call), so one pass for 235 calls
(50 logins/s) took ~2.8 ms, and the last packets of a pass left that late every tick:
the burst, not the timer, was most of the lateness. So the 20 ms are cut into
:data:`PHASES` slots of 5 ms and each talkspurt is given the least busy one: a pass
sends about a quarter of the packets, each call still every 20 ms on its own schedule.

Lateness is measured honestly, per packet: the clock is read right before each
``sendto`` and compared with the tick's due time, which comes from a fixed origin
(``origin + n x 20 ms``), never from when the previous tick happened to run. When the
loop was held up past one or more ticks, the missed ticks' packets go out at once, each
counted as late as it is, and the stream keeps its rate.
"""

from __future__ import annotations

import asyncio
import struct
import weakref
from collections.abc import Callable
from typing import Protocol

from .metrics import Histogram

FRAME_SECONDS = 0.020
"""20 ms packets (RFC 3551 §4.5: the default packetisation for G.711)."""
FRAME_SAMPLES = 160
"""8000 Hz x 20 ms: also the payload size in bytes, one byte per G.711 sample."""
HEADER_BYTES = 12
PACKET_BYTES = HEADER_BYTES + FRAME_SAMPLES
PHASES = 4
"""Slots per 20 ms: a talkspurt sends in one of them, every ``PHASES``-th pass."""
SLOT_SECONDS = FRAME_SECONDS / PHASES
EARLY_SECONDS = 0.001
"""A tick due within this much is sent now: the loop's timers fire to the millisecond,
and waking again for the last fraction would cost more than it is worth."""

_HEADER = struct.Struct("!BBHII")
_V2 = 0x80  # version 2, no padding, no extension, no CSRC (RFC 3550 §5.1)


class RtpSink(Protocol):
    """Where a talkspurt's packets go: the session's socket and the phone's address,
    read at each send (symmetric RTP may move it mid-call)."""

    remote: tuple[str, int] | None
    transport: asyncio.DatagramTransport


def packets(
    payload: bytes,
    *,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    marker: bool,
    pad: int,
) -> list[bytes]:
    """``payload`` cut into 20 ms RTP packets (the last padded with ``pad``), with
    consecutive sequence numbers and timestamps from the given first ones; the first
    carries the marker bit when ``marker`` (RFC 3551 §4.1: a talkspurt's first)."""
    count = -(-len(payload) // FRAME_SAMPLES)
    padded = memoryview(payload.ljust(count * FRAME_SAMPLES, bytes([pad])))
    buf = bytearray(count * PACKET_BYTES)
    for i in range(count):
        at = i * PACKET_BYTES
        _HEADER.pack_into(
            buf,
            at,
            _V2,
            payload_type | (0x80 if marker and i == 0 else 0),
            (sequence + i) & 0xFFFF,
            (timestamp + i * FRAME_SAMPLES) & 0xFFFFFFFF,
            ssrc,
        )
        buf[at + HEADER_BYTES : at + PACKET_BYTES] = padded[
            i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES
        ]
    # bytes, not memoryview slices: the garbage collector does not track bytes, so a
    # talkspurt's few hundred packets do not bring its next collection closer.
    data = bytes(buf)
    return [data[at : at + PACKET_BYTES] for at in range(0, len(data), PACKET_BYTES)]


class Talkspurt:
    """Packets to send one per tick, and the future that says how it ended: ``True``
    one tick after the last packet left, ``False`` when :meth:`cut` first."""

    __slots__ = ("done", "jitter", "next", "packets", "phase", "sink")

    def __init__(
        self,
        sink: RtpSink,
        packets: list[bytes],
        jitter: Histogram,
        done: asyncio.Future[bool],
    ) -> None:
        self.sink = sink
        self.packets = packets
        self.jitter = jitter
        self.done = done
        self.next = 0
        """How many packets have been sent (or skipped while the phone's address was
        unknown)."""
        self.phase = 0
        """The pacer's slot (of :data:`PHASES`) this talkspurt sends in."""

    def cut(self) -> None:
        """Stop now; the pacer drops it at its next tick."""
        if not self.done.done():
            self.done.set_result(False)


class Pacer:
    """The 20 ms tick of one event loop, in :data:`PHASES` slots of 5 ms. It runs while
    any talkspurt plays."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._playing: list[list[Talkspurt]] = [[] for _ in range(PHASES)]
        self._due = 0.0
        """When the next pass is due; it sends the talkspurts of slot ``_slot``."""
        self._slot = 0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self.ticks = 0
        """20 ms frames passed (each of ``PHASES`` passes)."""

    @property
    def playing(self) -> int:
        return sum(map(len, self._playing))

    def _quietest(self) -> int:
        counts = [len(p) for p in self._playing]
        return counts.index(min(counts))

    def next_due(self) -> float:
        """When a talkspurt started now sends its first packet."""
        if self._timer is None:
            return self._loop.time()
        return self._due + (self._quietest() - self._slot) % PHASES * SLOT_SECONDS

    def start(self, spurt: Talkspurt) -> None:
        """Send ``spurt``'s packets from its slot's next pass on (at :meth:`next_due`)."""
        if self._timer is None:
            self._due = self._loop.time()
            self._slot = 0
            self._timer = self._loop.call_soon(self._tick)
        spurt.phase = self._quietest()
        self._playing[spurt.phase].append(spurt)

    def _tick(self) -> None:
        loop = self._loop
        clock = loop.time
        due = self._due
        slot = self._slot
        playing = self._playing
        now = clock()
        while due <= now + EARLY_SECONDS:
            if playing[slot]:
                playing[slot] = self._send_all(playing[slot], due, clock)
            due += SLOT_SECONDS
            slot = (slot + 1) % PHASES
            if slot == 0:
                self.ticks += 1
            if not any(playing):
                self._timer = None
                return
            now = clock()
        self._due = due
        self._slot = slot
        self._timer = loop.call_at(due, self._tick)

    @staticmethod
    def _send_all(
        playing: list[Talkspurt], due: float, clock: Callable[[], float]
    ) -> list[Talkspurt]:
        keep = []
        for spurt in playing:
            if spurt.done.done():
                continue  # cut
            i = spurt.next
            if i == len(spurt.packets):
                spurt.done.set_result(True)  # the last packet's 20 ms have passed
                continue
            sink = spurt.sink
            remote = sink.remote
            if remote is not None:
                sink.transport.sendto(spurt.packets[i], remote)
                late = clock() - due
                spurt.jitter.observe(late if late > 0.0 else 0.0)
            spurt.next = i + 1
            keep.append(spurt)
        return keep


_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = weakref.WeakKeyDictionary()


def pacer_of(loop: asyncio.AbstractEventLoop) -> Pacer:
    """The pacer every media session on ``loop`` shares."""
    pacer = _pacers.get(loop)
    if pacer is None:
        pacer = _pacers[loop] = Pacer(loop)
    return pacer
