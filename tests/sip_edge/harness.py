"""An edge started in-process on free loopback ports against the test's nats-server,
SIPp run as a bounded subprocess, and a minimal phone for the cases SIPp cannot play."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.codec import encode_event
from hotdesk_contracts.directory import Desk, Directory, Extension, SipSettings, Trunk
from hotdesk_contracts.events import Cause, LoggedIn
from hotdesk_runtime.nats import ensure_jetstream
from hotdesk_sip_edge.edge import SipEdge
from hotdesk_sip_edge.location import KvLocationStore
from hotdesk_sip_edge.login_state import LedgerFollower, LoginMap
from hotdesk_sip_edge.sip.digest import DigestResponse, expected_response, parse_authorization
from hotdesk_sip_edge.sip.headers import parse_auth
from hotdesk_sip_edge.sip.message import SipResponse, parse
from tests.support.natsserver import free_port

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DESK_PASSWORD = "desk-secret-1"
EXT_PASSWORD = "ext-secret-101"


def free_udp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def directory(*, emergency_port: int | None = None, trunk_port: int | None = None) -> Directory:
    """Two desks, users 100 and 101, optional trunks on loopback ports."""
    trunks = []
    if emergency_port is not None:
        trunks.append(
            Trunk(name="emergency", uri=f"sip:127.0.0.1:{emergency_port}", emergency=True)
        )
    if trunk_port is not None:
        trunks.append(Trunk(name="carrier", uri=f"sip:127.0.0.1:{trunk_port}"))
    return Directory(
        extensions=[
            Extension(number="100", name="Alice Example", sip_password="ext-secret-100"),
            Extension(number="101", name="Bob Example", sip_password=EXT_PASSWORD),
        ],
        desks=[
            Desk(name="HD0001", mac="00:15:65:00:00:01", sip_password=DESK_PASSWORD),
            Desk(name="HD0002", mac="00:15:65:00:00:02", sip_password=DESK_PASSWORD),
        ],
        trunks=trunks,
    )


@dataclass
class RunningEdge:
    edge: SipEdge
    port: int
    logins: LoginMap
    follower: LedgerFollower
    locations: KvLocationStore
    published: list[tuple[str, bytes]] = field(default_factory=list)


@asynccontextmanager
async def running_edge(
    js: JetStreamContext,
    nc: Client,
    dirs: Directory,
    clock: Callable[[], float] = time.time,
    **settings: object,
) -> AsyncIterator[RunningEdge]:
    """Start an edge on a free port; events it publishes are also recorded."""
    await ensure_jetstream(js)
    logins = LoginMap()
    follower = LedgerFollower(js, logins)
    await follower.start()
    locations = await KvLocationStore.open(js)
    published: list[tuple[str, bytes]] = []

    async def publish(subject: str, data: bytes) -> None:
        published.append((subject, data))
        await nc.publish(subject, data)

    sip = SipSettings(advertised_host="127.0.0.1", min_expires=1, **settings)  # type: ignore[arg-type]
    edge = SipEdge(
        settings=sip,
        directory=lambda: dirs,
        locations=locations,
        logins=logins,
        publish=publish,
        instance_id="edge-test",
        clock=clock,
    )
    port = free_udp_port()
    await edge.start("127.0.0.1", port)
    try:
        yield RunningEdge(edge, port, logins, follower, locations, published)
    finally:
        await edge.close()
        await follower.stop()


async def seed_login(js: JetStreamContext, desk: str, user: str) -> None:
    """Append a LoggedIn event to the desk's ledger subject."""
    event = LoggedIn(
        event_id=f"login-{desk}-{user}",
        at=datetime.now(UTC),
        cause=Cause(actor="user:test"),
        correlation_id="test",
        desk=desk,
        user=user,
    )
    await js.publish(subjects.desk_ledger(desk), encode_event(event))


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    messages: str


async def run_sipp(
    scenario: str,
    edge_port: int,
    *,
    tmp: Path,
    port: int | None = None,
    user: str = "",
    password: str = "",
    service: str = "",
    transport: str = "u1",
    keys: dict[str, str] | None = None,
    calls: int = 1,
    timeout: int = 15,
    uas: bool = False,
) -> SippResult:
    """Run one SIPp scenario to completion (bounded by ``-timeout``)."""
    port = port or free_udp_port()
    args = [
        "sipp",
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-t",
        transport,
        "-m",
        str(calls),
        "-timeout",
        f"{timeout}s",
        "-timeout_error",
        "-max_recv_loops",
        "100",
        "-nostdin",
        "-trace_msg",
        "-trace_err",
        "-error_file",
        str(tmp / f"{scenario}-{port}.err"),
        "-message_file",
        str(tmp / f"{scenario}-{port}.log"),
    ]
    if not uas:
        args.append(f"127.0.0.1:{edge_port}")
    if user:
        args += ["-au", user, "-ap", password]
    if service:
        args += ["-s", service]
    for key, value in (keys or {}).items():
        args += ["-key", key, value]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=tmp,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout + 10)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    log = tmp / f"{scenario}-{port}.log"
    errors = tmp / f"{scenario}-{port}.err"
    return SippResult(
        proc.returncode if proc.returncode is not None else -1,
        out.decode(errors="replace"),
        err.decode(errors="replace")
        + (errors.read_text(errors="replace") if errors.exists() else ""),
        log.read_text(errors="replace") if log.exists() else "",
    )


class Phone:
    """A bare UDP phone on 127.0.0.1 for the NAT and registration helpers: it speaks
    only what a test scripts, so the bytes it sends are visible in the test."""

    def __init__(self, edge_port: int) -> None:
        self.edge = ("127.0.0.1", edge_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self._cseq = 0

    def close(self) -> None:
        self.sock.close()

    async def recv(self, timeout: float = 5.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)

    async def request(self, data: bytes, timeout: float = 5.0) -> SipResponse:
        """Send ``data`` and return the first final response."""
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, self.edge)
        while True:
            message = parse(await self.recv(timeout))
            if isinstance(message, SipResponse) and message.status >= 200:
                return message

    def register_bytes(
        self,
        user: str,
        *,
        via_host: str = "127.0.0.1",
        via_port: int | None = None,
        contact: str | None = None,
        expires: int = 120,
        call_id: str = "reg-1",
        authorization: str = "",
        rport: bool = False,
    ) -> bytes:
        self._cseq += 1
        via_port = via_port or self.port
        contact = contact or f"<sip:{user}@{via_host}:{via_port}>"
        lines = [
            f"REGISTER sip:127.0.0.1:{self.edge[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP {via_host}:{via_port};branch=z9hG4bK{call_id}{self._cseq}"
            + (";rport" if rport else ""),
            "Max-Forwards: 70",
            f"From: <sip:{user}@127.0.0.1>;tag=t{self._cseq}",
            f"To: <sip:{user}@127.0.0.1>",
            f"Call-ID: {call_id}",
            f"CSeq: {self._cseq} REGISTER",
            f"Contact: {contact}",
            f"Expires: {expires}",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def register(
        self,
        user: str,
        password: str,
        *,
        algorithm: str = "MD5",
        **kwargs: object,
    ) -> SipResponse:
        """REGISTER with digest (answering the challenge as a phone would)."""
        first = await self.request(self.register_bytes(user, **kwargs))  # type: ignore[arg-type]
        if first.status != 401:
            return first
        _, params = parse_auth(first.headers.get("WWW-Authenticate") or "")
        uri = f"sip:127.0.0.1:{self.edge[1]}"
        creds = DigestResponse(
            username=user,
            realm=params["realm"],
            nonce=params["nonce"],
            uri=uri,
            response="",
            algorithm=algorithm,
            qop="auth",
            nc="00000001",
            cnonce="c0ffee",
        )
        digest = expected_response(creds, "REGISTER", password)
        header = (
            f'Digest username="{user}", realm="{creds.realm}", nonce="{creds.nonce}", '
            f'uri="{uri}", response="{digest}", algorithm={algorithm}, qop=auth, '
            f'nc=00000001, cnonce="c0ffee"'
        )
        parse_authorization(header)
        return await self.request(
            self.register_bytes(user, authorization=header, **kwargs)  # type: ignore[arg-type]
        )


async def authorized_invite(phone: Phone, user: str, password: str, dialled: str) -> SipResponse:
    """INVITE ``dialled`` as ``user``, answering the 407 challenge; the final response."""
    port = phone.edge[1]

    def invite(cseq: int, auth: str = "") -> bytes:
        lines = [
            f"INVITE sip:{dialled}@127.0.0.1:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bKinv{cseq}",
            f"From: <sip:{user}@127.0.0.1>;tag=inv",
            f"To: <sip:{dialled}@127.0.0.1>",
            "Call-ID: invite-1",
            f"CSeq: {cseq} INVITE",
            f"Contact: <sip:{user}@127.0.0.1:{phone.port}>",
            "Max-Forwards: 70",
        ]
        if auth:
            lines.append(f"Proxy-Authorization: {auth}")
        return ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()

    challenge = await phone.request(invite(1))
    if challenge.status != 407:
        return challenge
    _, params = parse_auth(challenge.headers.get("Proxy-Authenticate") or "")
    uri = f"sip:{dialled}@127.0.0.1:{port}"
    creds = DigestResponse(
        username=user,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=uri,
        response="",
        qop="auth",
        nc="00000001",
        cnonce="feed",
    )
    digest = expected_response(creds, "INVITE", password)
    header = (
        f'Digest username="{user}", realm="{creds.realm}", nonce="{creds.nonce}", '
        f'uri="{uri}", response="{digest}", algorithm=MD5, qop=auth, nc=00000001, '
        'cnonce="feed"'
    )
    return await phone.request(invite(2, header))
