"""The BLF subscribers of the fan-out benchmark, as one process of their own.

``python -m bench.presence.subscribers --edge-port P --count N ...`` opens ``N`` UDP
sockets on 127.0.0.1, one per desk phone (``HD0001`` ...), subscribes each to one
extension's dialog state at the edge (``SUBSCRIBE Event: dialog``, answering the
digest challenge as a phone does), answers every NOTIFY with ``200 OK`` (so the edge's
client transactions end, RFC 3261 section 17.1.2.2), counts a NOTIFY whose CSeq is not
above the last one as a retransmission and reports on stdout, one JSON line each:

* ``{"ready": true, "ports": [...]}`` once every subscription got its first NOTIFY;
* ``{"armed": r}`` after the parent wrote ``arm`` on stdin: round ``r`` starts with no
  arrival counted, so nothing that came before (a late NOTIFY of an earlier change)
  can complete it;
* ``{"round": r, "first": t, "last": t, "repeats": n}`` once every socket has received
  one more NOTIFY since the round was armed, with the ``time.monotonic()`` of the first
  and the last arrival and how many retransmitted NOTIFYs came so far. The clock is
  the system-wide monotonic clock, so the parent compares it with its own readings.

The NOTIFYs of the first round are written to ``--dump`` (port and bytes per line, hex),
for the parent's bare-``sendto`` floor. The process ends when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import cast

from hotdesk_sip_edge.sip.digest import DigestResponse, expected_response
from hotdesk_sip_edge.sip.headers import parse_auth
from hotdesk_sip_edge.sip.message import SipResponse, parse

PASSWORD_ENV = "BENCH_DESK_PASSWORD"
"""The desks' SIP password comes in the environment, not on the command line."""


def desk_name(index: int) -> str:
    """The desk the ``index``-th subscriber is (``HD0001`` for index 0)."""
    return f"HD{index + 1:04d}"


# Header lines a UAS copies from a request into its response (RFC 3261 section 8.2.6.2),
# long or compact names. One regex pass: the subscribers answer a thousand NOTIFYs per
# change on the same machine as the edge, so their CPU time is kept small.
_COPIED = re.compile(rb"\r\n((?:via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[^\r\n]*)", re.IGNORECASE)


def ok_for(notify: bytes) -> bytes:
    """A ``200 OK`` for a NOTIFY: its Via, From, To, Call-ID and CSeq copied back."""
    end = notify.find(b"\r\n\r\n")
    head = notify if end < 0 else notify[: end + 2]
    lines = [b"SIP/2.0 200 OK", *_COPIED.findall(head), b"Content-Length: 0"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def notify_cseq(data: bytes) -> int:
    """The CSeq number of a NOTIFY (0 when it has none)."""
    start = data.find(b"\r\nCSeq:")
    if start < 0:
        return 0
    value = data[start + 7 : data.find(b"\r\n", start + 7)].split()
    return int(value[0]) if value and value[0].isdigit() else 0


class Rounds:
    """Counts NOTIFY arrivals per round: a round ends when every socket has one."""

    def __init__(self, count: int, dump: Path | None) -> None:
        self.count = count
        self.dump = dump
        self.counting = False
        self.number = 0
        self.seen: dict[int, bytes] = {}
        self.first = 0.0
        self.last = 0.0
        self.repeats = 0
        """NOTIFYs a socket got twice in one round (retransmissions): should stay 0."""

    def arm(self) -> int:
        """Start the next round from nothing counted; its number."""
        self.counting = True
        self.seen = {}
        return self.number + 1

    def arrived(self, index: int, data: bytes, at: float) -> None:
        if not self.counting:
            return
        if index in self.seen:
            self.repeats += 1
            return
        if not self.seen:
            self.first = at
        self.seen[index] = data
        self.last = at
        if len(self.seen) == self.count:
            self.number += 1
            line = {
                "round": self.number,
                "first": self.first,
                "last": self.last,
                "repeats": self.repeats,
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            if self.number == 1 and self.dump is not None:
                self.dump.write_text(
                    "".join(f"{i} {data.hex()}\n" for i, data in sorted(self.seen.items()))
                )
            self.seen = {}


class Subscriber(asyncio.DatagramProtocol):
    """One phone's BLF key: one socket, one subscription."""

    def __init__(self, index: int, rounds: Rounds) -> None:
        self.index = index
        self.rounds = rounds
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self.notified = asyncio.Event()
        self.cseq = 0
        """The highest NOTIFY CSeq seen: a NOTIFY at or below it is a retransmission
        (RFC 3261 section 12.2.1.1, CSeq grows by one per request in a dialog)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        at = time.monotonic()
        if data.startswith(b"NOTIFY "):
            assert self.transport is not None
            self.transport.sendto(ok_for(data), addr)
            self.notified.set()
            cseq = notify_cseq(data)
            if cseq <= self.cseq:
                self.rounds.repeats += 1
                return
            self.cseq = cseq
            self.rounds.arrived(self.index, data, at)
        elif data.startswith(b"SIP/2.0 "):
            message = parse(data)
            if isinstance(message, SipResponse):
                self.responses.put_nowait(message)


def subscribe_bytes(
    sub: Subscriber, edge_port: int, ext: str, user: str, cseq: int, authorization: str = ""
) -> bytes:
    """A SUBSCRIBE for ``ext``'s dialog state from ``user`` at ``sub``'s socket."""
    lines = [
        f"SUBSCRIBE sip:{ext}@127.0.0.1:{edge_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{sub.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@127.0.0.1>;tag=blf{sub.index}",
        f"To: <sip:{ext}@127.0.0.1>",
        f"Call-ID: blf-{sub.index}-{sub.port}",
        f"CSeq: {cseq} SUBSCRIBE",
        f"Contact: <sip:{user}@127.0.0.1:{sub.port}>",
        "Event: dialog",
        "Accept: application/dialog-info+xml",
        "Expires: 3600",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _final(sub: Subscriber, request: bytes, edge: tuple[str, int]) -> SipResponse:
    """Send ``request`` until a final response comes (UDP may drop under load)."""
    assert sub.transport is not None
    for _ in range(10):
        sub.transport.sendto(request, edge)
        try:
            while True:
                response = await asyncio.wait_for(sub.responses.get(), 1.0)
                if response.status >= 200:
                    return response
        except TimeoutError:
            continue
    raise RuntimeError(f"subscriber {sub.index}: no final response from the edge")


async def subscribe(sub: Subscriber, edge_port: int, ext: str, user: str, password: str) -> None:
    """Subscribe with digest authentication and wait for the first NOTIFY."""
    edge = ("127.0.0.1", edge_port)
    challenge = await _final(sub, subscribe_bytes(sub, edge_port, ext, user, 1), edge)
    if challenge.status != 401:
        raise RuntimeError(f"subscriber {sub.index}: expected 401, got {challenge.status}")
    _, params = parse_auth(challenge.headers.get("WWW-Authenticate") or "")
    uri = f"sip:{ext}@127.0.0.1:{edge_port}"
    creds = DigestResponse(
        username=user,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=uri,
        response="",
        qop="auth",
        nc="00000001",
        cnonce=secrets.token_hex(4),
    )
    digest = expected_response(creds, "SUBSCRIBE", password)
    header = (
        f'Digest username="{user}", realm="{creds.realm}", nonce="{creds.nonce}", '
        f'uri="{uri}", response="{digest}", algorithm=MD5, qop=auth, '
        f'nc=00000001, cnonce="{creds.cnonce}"'
    )
    answer = await _final(sub, subscribe_bytes(sub, edge_port, ext, user, 2, header), edge)
    if answer.status != 200:
        raise RuntimeError(f"subscriber {sub.index}: SUBSCRIBE answered {answer.status}")
    await asyncio.wait_for(sub.notified.wait(), 10.0)


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    password = os.environ[PASSWORD_ENV]
    rounds = Rounds(args.count, Path(args.dump) if args.dump else None)
    subs: list[Subscriber] = []
    for index in range(args.count):
        _, protocol = await loop.create_datagram_endpoint(
            lambda i=index: Subscriber(i, rounds),  # type: ignore[misc]
            local_addr=("127.0.0.1", 0),
        )
        subs.append(protocol)
    # A few at a time, as phones booting on a floor would: the edge is not flooded.
    gate = asyncio.Semaphore(args.concurrency)

    async def one(sub: Subscriber) -> None:
        async with gate:
            await subscribe(sub, args.edge_port, args.ext, desk_name(sub.index), password)

    await asyncio.gather(*(one(s) for s in subs))
    sys.stdout.write(json.dumps({"ready": True, "ports": [s.port for s in subs]}) + "\n")
    sys.stdout.flush()
    # Each ``arm`` line starts a round; run until the parent closes our stdin.
    while command := await loop.run_in_executor(None, sys.stdin.readline):
        if command.strip() == "arm":
            sys.stdout.write(json.dumps({"armed": rounds.arm()}) + "\n")
            sys.stdout.flush()
    for sub in subs:
        if sub.transport is not None:
            sub.transport.close()


def main(argv: list[str]) -> int:
    """Subscribe, report rounds until stdin closes; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m bench.presence.subscribers")
    parser.add_argument("--edge-port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--ext", default="100")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--dump", default="")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
