"""A scripted UDP desk phone for the dialog cases SIPp cannot express compactly: it
answers the edge's 407 itself and keeps the dialog's tags and CSeq."""

from __future__ import annotations

import asyncio
import itertools
import socket

from hotdesk_sip_edge.sip.digest import DigestResponse, expected_response
from hotdesk_sip_edge.sip.headers import parse_auth
from hotdesk_sip_edge.sip.message import SipRequest, SipResponse, parse

OFFER = (
    "v=0\r\no=desk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP {formats}\r\na=rtpmap:101 telephone-event/8000\r\n"
)


class RawPhone:
    """One desk's dialog with the edge, over a loopback UDP socket."""

    def __init__(self, edge_port: int, desk: str, password: str) -> None:
        self.edge = ("127.0.0.1", edge_port)
        self.desk, self.password = desk, password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.call_id = f"raw-{self.port}@127.0.0.1"
        self.from_tag = f"f{self.port}"
        self.to = ""
        self.cseq = itertools.count(1)
        self._branch = itertools.count(1)
        self.requests: asyncio.Queue[SipRequest] = asyncio.Queue()

    def close(self) -> None:
        self.sock.close()

    async def _recv(self, timeout: float) -> SipRequest | SipResponse:
        loop = asyncio.get_running_loop()
        return parse(await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout))

    async def send(self, data: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data.encode(), self.edge)

    async def final(self, timeout: float = 5.0) -> SipResponse:
        """The next final response (requests from the edge are queued meanwhile)."""
        while True:
            message = await self._recv(timeout)
            if isinstance(message, SipRequest):
                self.requests.put_nowait(message)
            elif message.status >= 200:
                return message

    async def request_from_edge(self, timeout: float = 10.0) -> SipRequest:
        """The next request the edge sends (a BYE, say)."""
        if not self.requests.empty():
            return self.requests.get_nowait()
        while True:
            message = await self._recv(timeout)
            if isinstance(message, SipRequest):
                return message

    def message(
        self, method: str, uri: str, *, cseq: int, extra: str = "", body: str = "", to: str = ""
    ) -> str:
        branch = f"z9hG4bKraw{self.port}x{next(self._branch)}"
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.desk}@127.0.0.1>;tag={self.from_tag}\r\n"
            f"To: {to or self.to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.desk}@127.0.0.1:{self.port}>\r\n"
            f"{extra}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )

    async def invite(self, dial: str, offer: str) -> SipResponse:
        """INVITE ``dial``, answer the 407, return the final response (ACKed if 2xx)."""
        uri = f"sip:{dial}@127.0.0.1:{self.edge[1]}"
        self.to = f"<sip:{dial}@127.0.0.1>"
        extra = "Content-Type: application/sdp\r\n"
        first = self.message("INVITE", uri, cseq=next(self.cseq), extra=extra, body=offer)
        await self.send(first)
        challenge = await self.final()
        assert challenge.status == 407, challenge.status
        _, params = parse_auth(challenge.headers.get("Proxy-Authenticate") or "")
        creds = DigestResponse(
            username=self.desk,
            realm=params["realm"],
            nonce=params["nonce"],
            uri=uri,
            response="",
            algorithm="MD5",
            qop="auth",
            nc="00000001",
            cnonce="c0ffee",
        )
        digest = expected_response(creds, "INVITE", self.password)
        auth = (
            f'Proxy-Authorization: Digest username="{self.desk}", realm="{creds.realm}", '
            f'nonce="{creds.nonce}", uri="{uri}", response="{digest}", algorithm=MD5, '
            'qop=auth, nc=00000001, cnonce="c0ffee"\r\n'
        )
        await self.send(
            self.message("INVITE", uri, cseq=next(self.cseq), extra=extra + auth, body=offer)
        )
        answer = await self.final()
        if 200 <= answer.status < 300:
            self.to = answer.headers.get("To") or ""
            self.target = (answer.contacts() or [])[0].raw_uri
            await self.send(self.message("ACK", self.target, cseq=answer.cseq.seq))
        return answer

    async def in_dialog(self, method: str, *, extra: str = "", body: str = "") -> SipResponse:
        """Send ``method`` inside the dialog; its final response."""
        await self.send(
            self.message(method, self.target, cseq=next(self.cseq), extra=extra, body=body)
        )
        return await self.final()
