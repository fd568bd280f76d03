"""Read RTP packets out of a classic libpcap file (for the saved DTMF captures).

Only what the captures need: the pcap global header and records, Ethernet II, IPv4
without fragments, UDP.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

PCAP_DIR = Path(__file__).resolve().parents[2] / "data" / "pcap"
DTMF_CAPTURES = {
    **{str(d): PCAP_DIR / f"dtmf_2833_{d}.pcap" for d in range(10)},
    "*": PCAP_DIR / "dtmf_2833_star.pcap",
    "#": PCAP_DIR / "dtmf_2833_pound.pcap",
}


@dataclass(frozen=True)
class UdpDatagram:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def udp_datagrams(path: Path) -> list[UdpDatagram]:
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian = ">"
    else:
        raise ValueError(f"{path.name} is not a classic pcap file")
    _, _, _, _, _, linktype = struct.unpack_from(endian + "HHiIII", data, 4)
    if linktype != 1:
        raise ValueError(f"{path.name}: link type {linktype}, only Ethernet (1) is read")
    offset = 24
    out: list[UdpDatagram] = []
    while offset + 16 <= len(data):
        _, _, incl_len, _ = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + incl_len]
        offset += 16 + incl_len
        if struct.unpack_from("!H", frame, 12)[0] != 0x0800:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if ip[9] != 17:
            continue
        src_ip, dst_ip = ip[12:16], ip[16:20]
        udp = ip[ihl:total]
        sport, dport, length = struct.unpack_from("!HHH", udp)
        out.append(
            UdpDatagram(
                src=(".".join(map(str, src_ip)), sport),
                dst=(".".join(map(str, dst_ip)), dport),
                payload=bytes(udp[8:length]),
            )
        )
    return out
