"""A small RTP peer on loopback UDP: what a phone's media side does, for tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hotdesk_sip_edge.media import rtp


@dataclass(frozen=True)
class Received:
    packet: rtp.RtpPacket
    source: tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, peer: RtpPeer) -> None:
        self.peer = peer

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer.received.put_nowait(Received(rtp.parse(data), addr))


class RtpPeer:
    def __init__(self) -> None:
        self.received: asyncio.Queue[Received] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> RtpPeer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=("127.0.0.1", 0)
        )
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def offer(self, formats: str = "0 8 101") -> bytes:
        return (
            "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.port} RTP/AVP {formats}\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
        ).encode()

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def next(self, timeout: float = 5.0) -> Received:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def collect(self, count: int, timeout: float = 10.0) -> list[Received]:
        return [await self.next(timeout) for _ in range(count)]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
