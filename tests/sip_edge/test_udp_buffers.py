"""The edge's UDP socket asks for large buffers, so a BLF fan-out's answers fit."""

from __future__ import annotations

import socket

from hotdesk_sip_edge.sip.transport import size_udp_buffers


def test_udp_buffers_grow_beyond_the_kernel_default() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        default_rcv = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        rcv, snd = size_udp_buffers(sock, 4 * 1024 * 1024)
        assert rcv > default_rcv
        assert snd > 0
