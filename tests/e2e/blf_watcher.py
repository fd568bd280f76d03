"""A BLF key as a small UDP SIP endpoint: it SUBSCRIBEs to a user's dialog state
through the edge (answering the digest challenge), answers every NOTIFY with 200 and
keeps each new NOTIFY's parsed RFC 4235 body, in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from hotdesk_sip_edge.blf import dialog_info
from hotdesk_sip_edge.blf.dialog_info import DialogInfo
from hotdesk_sip_edge.sip.digest import DigestResponse, expected_response
from hotdesk_sip_edge.sip.headers import parse_auth
from hotdesk_sip_edge.sip.message import SipRequest, SipResponse, parse


class BlfWatcher:
    """One ``Event: dialog`` subscription from a desk's BLF key (RFC 4235, RFC 6665)."""

    def __init__(self, edge_port: int, user: str, password: str) -> None:
        self.edge = ("127.0.0.1", edge_port)
        self.user, self.password = user, password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.documents: list[DialogInfo] = []
        """Every NOTIFY body, once per CSeq (retransmissions are answered, not kept)."""
        self.changed = asyncio.Event()
        self._responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self._seen: set[int] = set()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BlfWatcher:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.sock.close()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65535)
            message = parse(data)
            if isinstance(message, SipResponse):
                self._responses.put_nowait(message)
                continue
            if message.method != "NOTIFY":
                continue
            await loop.sock_sendto(self.sock, self._ok(message), self.edge)
            if message.cseq.seq in self._seen:
                continue
            self._seen.add(message.cseq.seq)
            if message.body:
                self.documents.append(dialog_info.parse(message.body))
                self.changed.set()

    @staticmethod
    def _ok(request: SipRequest) -> bytes:
        # RFC 3261 §8.2.6.2: the response copies Via, From, To, Call-ID and CSeq.
        lines = ["SIP/2.0 200 OK"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            lines += [f"{name}: {value}" for value in request.headers.get_all(name)]
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    async def subscribe(self, ext: str, expires: int = 600) -> SipResponse:
        """SUBSCRIBE to ``ext``'s dialog state, answering a 401; the final response."""
        uri = f"sip:{ext}@127.0.0.1:{self.edge[1]}"
        first = await self._send_subscribe(ext, uri, 1, "", expires)
        if first.status != 401:
            return first
        _, params = parse_auth(first.headers.get("WWW-Authenticate") or "")
        creds = DigestResponse(
            username=self.user,
            realm=params["realm"],
            nonce=params["nonce"],
            uri=uri,
            response="",
            qop="auth",
            nc="00000001",
            cnonce="b1f0",
        )
        digest = expected_response(creds, "SUBSCRIBE", self.password)
        auth = (
            f'Authorization: Digest username="{self.user}", realm="{creds.realm}", '
            f'nonce="{creds.nonce}", uri="{uri}", response="{digest}", algorithm=MD5, '
            'qop=auth, nc=00000001, cnonce="b1f0"\r\n'
        )
        return await self._send_subscribe(ext, uri, 2, auth, expires)

    async def _send_subscribe(
        self, ext: str, uri: str, cseq: int, auth: str, expires: int
    ) -> SipResponse:
        request = (
            f"SUBSCRIBE {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKblf{self.port}x{cseq}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.user}@127.0.0.1>;tag=blf{self.port}\r\n"
            f"To: <sip:{ext}@127.0.0.1>\r\n"
            f"Call-ID: blf-{self.port}@127.0.0.1\r\n"
            f"CSeq: {cseq} SUBSCRIBE\r\n"
            f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>\r\n"
            "Event: dialog\r\nAccept: application/dialog-info+xml\r\n"
            f"Expires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        # Retransmit over UDP like Timer E would (RFC 3261 §17.1.2.2), a bounded number of times.
        for _ in range(10):
            await loop.sock_sendto(self.sock, request, self.edge)
            try:
                while True:
                    response = await asyncio.wait_for(self._responses.get(), 0.5)
                    if response.cseq.seq == cseq and response.status >= 200:
                        return response
            except TimeoutError:
                continue
        raise AssertionError(f"no final response to SUBSCRIBE {ext}")

    async def wait_for(self, ext: str, states: list[str], timeout: float = 15.0) -> None:
        """Wait until the lamp of ``ext`` has shown ``states`` in this order (among
        others), counting from the first document."""
        try:
            async with asyncio.timeout(timeout):
                while not _follows(lamp(self.documents, ext), states):
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            shown = [(d.entity, d.version, lamp_state(d)) for d in self.documents]
            raise AssertionError(f"lamp of {ext} never showed {states}: {shown}") from None


def lamp_state(document: DialogInfo) -> str:
    """What a BLF lamp shows for one document: the state of its liveliest dialog."""
    order = ["terminated", "trying", "proceeding", "early", "confirmed"]
    return max((d.state for d in document.dialogs), key=order.index, default="terminated")


def lamp(documents: list[DialogInfo], ext: str) -> list[str]:
    """The lamp states an entity went through, repeats folded."""
    shown: list[str] = []
    for document in documents:
        if not document.entity.startswith(f"sip:{ext}@"):
            continue
        state = lamp_state(document)
        if not shown or shown[-1] != state:
            shown.append(state)
    return shown


def _follows(shown: list[str], states: list[str]) -> bool:
    it = iter(shown)
    return all(any(s == want for s in it) for want in states)
