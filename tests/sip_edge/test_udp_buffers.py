"""The edge's UDP socket asks for large buffers, so a BLF fan-out's answers fit."""

from __future__ import annotations

import socket

from hotdesk_sip_edge.sip.transport import SipTransport, size_udp_buffers


def test_udp_buffers_grow_beyond_the_kernel_default() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        default_rcv = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        rcv, snd = size_udp_buffers(sock, 4 * 1024 * 1024)
        assert rcv > default_rcv
        assert snd > 0


async def test_a_started_transport_tells_the_receive_buffer_the_kernel_granted() -> None:
    async def ignore(message: object, source: object) -> None:
        return None

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        default_rcv = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    sized = SipTransport(ignore, udp_buffer_bytes=4 * 1024 * 1024)
    unsized = SipTransport(ignore, udp_buffer_bytes=0)
    assert sized.udp_receive_buffer == unsized.udp_receive_buffer == 0
    await sized.start("127.0.0.1", 0)
    await unsized.start("127.0.0.1", 0)
    try:
        assert sized.udp_receive_buffer > default_rcv
        assert unsized.udp_receive_buffer == default_rcv
    finally:
        await sized.close()
        await unsized.close()
