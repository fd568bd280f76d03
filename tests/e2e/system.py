"""The real hot-desk system in-process on free loopback ports: the sip-edge and the IVR
services' ``serve(ctx)`` (and, when asked, the provisioner and presence) against the
test's nats-server, and SIPp desks driving it."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import (
    Config,
    Desk,
    Extension,
    HttpSettings,
    ProvisioningSettings,
    SipSettings,
)
from hotdesk_contracts.events import LedgerEvent
from hotdesk_ivr import main as ivr_main
from hotdesk_ivr import prompts
from hotdesk_ledger.store import EventStore
from hotdesk_presence import main as presence_main
from hotdesk_provisioner import main as provisioner_main
from hotdesk_runtime.config import hash_secret
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.nats import ensure_jetstream
from hotdesk_sip_edge import main as edge_main
from hotdesk_sip_edge.media import g711, wav
from tests.sip_edge.media.pcap import DTMF_CAPTURES
from tests.support.natsserver import free_port

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DESK_PASSWORD = "desk-secret-e2e"
PINS = {"100": "1234", "101": "4321"}
EDGE_ID = "edge-e2e"


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


def free_sipp_media_port() -> int:
    """A base for SIPp's ``-mp``: SIPp binds it and the ports up to +3 (audio and video
    RTP and RTCP), so all four must be free on 127.0.0.1, not only the first."""
    for _ in range(100):
        base = free_port() & ~1
        held: list[socket.socket] = []
        try:
            for offset in range(4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no four consecutive free UDP ports")


@functools.cache
def pin_hash(pin: str) -> str:
    """The argon2 hash of a PIN, once per test session (hashing is slow on purpose)."""
    return hash_secret(pin)


def config(sip_port: int, rtp: tuple[int, int], *, logout_key_uri: str = "") -> Config:
    """Desks HD0001/HD0002 and users 100/101 with hashed PINs; SIP on loopback."""
    return Config(
        extensions=[
            Extension(number="100", name="Ann Example", pin_hash=pin_hash(PINS["100"])),
            Extension(number="101", name="Bob Example", pin_hash=pin_hash(PINS["101"])),
        ],
        desks=[
            Desk(name="HD0001", mac="001565000001", sip_password=DESK_PASSWORD),
            Desk(name="HD0002", mac="001565000002", sip_password=DESK_PASSWORD),
        ],
        sip=SipSettings(
            listen="127.0.0.1",
            advertised_host="127.0.0.1",
            port=sip_port,
            rtp_port_min=rtp[0],
            rtp_port_max=rtp[1],
            min_expires=1,
            logout_key_uri=logout_key_uri,
        ),
    )


@dataclass
class System:
    sip_port: int
    config: Config
    js: JetStreamContext
    services: dict[str, tuple[ServiceContext, asyncio.Task[None]]] = field(default_factory=dict)
    """Each running service's context and ``serve`` task, by name (a test may stop one
    by setting its ``ctx.stopping``, as SIGTERM does)."""

    @property
    def provisioning_url(self) -> str:
        """The provisioning HTTP server's base URL (when the provisioner runs)."""
        return f"http://127.0.0.1:{self.config.provisioning.port}"

    @property
    def admin_url(self) -> str:
        """The admin API's base URL (when presence runs)."""
        return f"http://127.0.0.1:{self.config.admin.port}"

    async def ledger(self, subject: str) -> list[LedgerEvent]:
        events, _ = await EventStore(self.js).load(subject)
        return list(events)

    async def desk_ledger(self, desk: str) -> list[LedgerEvent]:
        return await self.ledger(subjects.desk_ledger(desk))

    async def whole_ledger(self) -> dict[str, list[LedgerEvent]]:
        """Every ledger event, by subject (each subject's events in order)."""
        out: dict[str, list[LedgerEvent]] = {}
        for stored in await EventStore(self.js).read(subjects.LEDGER_ALL):
            out.setdefault(stored.subject, []).append(stored.event)
        return out


async def _edge_answers(port: int) -> None:
    """Wait until the edge answers an OPTIONS on its UDP port."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    options = (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{sock.getsockname()[1]};branch=z9hG4bKprobe\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
        "Call-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    try:
        for _ in range(100):
            await loop.sock_sendto(sock, options, ("127.0.0.1", port))
            try:
                await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.1)
                return
            except TimeoutError:
                continue
        raise AssertionError("the edge never answered")
    finally:
        sock.close()


def _context(name: str, cfg: Config, nc: Client, js: JetStreamContext) -> ServiceContext:
    return ServiceContext(
        name=name,
        instance_id=EDGE_ID if name == "sip-edge" else f"{name}-e2e",
        config=cfg,
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger(f"e2e.{name}"),
    )


PROVISIONER = "provisioner"
PRESENCE = "presence"


async def _own_connection(nc: Client, connections: list[Client]) -> Client:
    """A connection of the service's own, as in production: closed when the system
    stops, so whatever the service leaves subscribed cannot hold up the test's own
    connection draining."""
    url = nc.connected_url
    assert url is not None, "the test's connection is not connected"
    own = await nats.connect(f"nats://{url.hostname}:{url.port}")
    connections.append(own)
    return own


async def _http_answers(port: int) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``."""
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nothing listens on port {port}")


@asynccontextmanager
async def running_system(
    nc: Client,
    js: JetStreamContext,
    rtp: tuple[int, int],
    *,
    logout_key_uri: str = "",
    extra: Sequence[str] = (),
    configure: Callable[[Config], Config] | None = None,
    ivr: bool = True,
) -> AsyncIterator[System]:
    """The IVR and the edge, each its service's own ``serve(ctx)``, until the block ends.

    ``extra`` adds :data:`PROVISIONER` and/or :data:`PRESENCE`, their HTTP servers on
    free loopback ports; ``configure`` edits the configuration before anything starts
    (the ports are already filled in). Without ``ivr`` no IVR runs in the test's
    process: the test runs its own (``hotdesk run ivr`` processes, say), which must
    have installed the prompts."""
    await ensure_jetstream(js)
    port = free_udp_port()
    cfg = config(port, rtp, logout_key_uri=logout_key_uri)
    cfg = msgspec.structs.replace(
        cfg,
        provisioning=ProvisioningSettings(listen="127.0.0.1", port=free_port()),
        admin=HttpSettings(listen="127.0.0.1", port=free_port()),
    )
    if configure is not None:
        cfg = configure(cfg)
    contexts: list[ServiceContext] = []
    tasks: list[asyncio.Task[None]] = []
    connections: list[Client] = []
    try:
        if ivr:
            ivr_ctx = _context("ivr", cfg, nc, js)
            contexts.append(ivr_ctx)
            tasks.append(asyncio.create_task(ivr_main.serve(ivr_ctx)))
        for _ in range(500):
            if {r.state for r in await prompts.status(js)} == {prompts.OK}:
                break
            await asyncio.sleep(0.02)
        edge_ctx = _context("sip-edge", cfg, nc, js)
        contexts.append(edge_ctx)
        tasks.append(asyncio.create_task(edge_main.serve(edge_ctx)))
        await _edge_answers(port)
        if PRESENCE in extra:
            presence_nc = await _own_connection(nc, connections)
            presence_ctx = _context(PRESENCE, cfg, presence_nc, presence_nc.jetstream())
            contexts.append(presence_ctx)
            tasks.append(asyncio.create_task(presence_main.serve(presence_ctx)))
            await _http_answers(cfg.admin.port)
        if PROVISIONER in extra:
            provisioner_nc = await _own_connection(nc, connections)
            provisioner_ctx = _context(PROVISIONER, cfg, provisioner_nc, provisioner_nc.jetstream())
            contexts.append(provisioner_ctx)
            tasks.append(asyncio.create_task(provisioner_main.serve(provisioner_ctx)))
            await _http_answers(cfg.provisioning.port)
        # Every service says it is ready (the IVR's dial queue and the edge's ledger
        # follower bound, the projections running), as its /readyz would.
        async with asyncio.timeout(60):
            while not all(ctx.readiness() and ctx.ready for ctx in contexts):
                await asyncio.sleep(0.02)
        yield System(
            port,
            cfg,
            js,
            {ctx.name: (ctx, task) for ctx, task in zip(contexts, tasks, strict=True)},
        )
    finally:
        for ctx in reversed(contexts):
            ctx.stopping.set()
        try:
            for task in reversed(tasks):
                # Bounded: a service drains its calls for up to sip.drain_seconds (20 s).
                await asyncio.wait_for(task, 45)
        finally:
            for connection in connections:
                await connection.close()


INFO_STEP = """  <send retrans="500">
    <![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: desk <sip:[desk]@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[dial]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: @CSEQ@ INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=@DIGIT@
      Duration=160

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="100"/>"""


def digits_steps(digits: str, *, gap_ms: int = 400, info: bool = False) -> str:
    """SIPp steps replaying one RFC 2833 capture per digit (or sending one SIP INFO per
    digit when ``info``); ``|`` pauses 1.5 s (the IVR checks a PIN before it takes
    digits again)."""
    steps = []
    for n, digit in enumerate(digits, start=3):
        if digit == "|":
            steps.append('  <pause milliseconds="1500"/>')
            continue
        if info:
            steps.append(INFO_STEP.replace("@CSEQ@", str(n)).replace("@DIGIT@", digit))
            continue
        steps.append(
            f'  <nop><action><exec play_pcap_audio="{DTMF_CAPTURES[digit]}"/></action></nop>\n'
            f'  <pause milliseconds="{gap_ms}"/>'
        )
    return "\n".join(steps)


@dataclass
class SippRun:
    returncode: int
    stderr: str
    messages: str


async def sipp_desk_call(
    system: System,
    tmp: Path,
    *,
    desk: str,
    dial: str,
    digits: str,
    rtp_listener: int,
    name: str = "call",
    info: bool = False,
    transport: str = "u1",
    contact_port: int | None = None,
    digits_from_listener: bool = False,
) -> SippRun:
    """A SIPp desk registers, dials ``dial`` and types ``digits`` (over UDP, or TCP with
    ``transport="t1"``); bounded by its own ``-timeout``. With ``contact_port`` the
    REGISTER binds the desk to that loopback port instead of SIPp's own (where another
    process plays the phone's SIP port: check-sync NOTIFYs and calls go there).

    The SDP offers ``rtp_listener`` as the desk's media port. SIPp replays the RFC 2833
    captures from a raw socket whose source port is whatever ``[media_port]`` stood for
    on the offer's audio line, and without that keyword port 0: the edge's symmetric
    RTP then answers to port 0 and the listener hears nothing after the first digit.
    With ``digits_from_listener`` the offer's port is written as ``[media_port±n]``
    naming ``rtp_listener``, so the digits come from the port the listener holds and
    it hears the whole call, as a phone's one RTP port would."""
    text = (
        (SCENARIOS / "desk_call.xml")
        .read_text()
        .replace("@DIGITS@", digits_steps(digits, info=info))
    )
    media_port = free_sipp_media_port()
    if digits_from_listener:
        # SIPp binds -mp to -mp+3 itself; the listener holds its port already.
        while -3 <= rtp_listener - media_port <= 3:
            media_port = free_sipp_media_port()
        offer = "m=audio [rtp] RTP/AVP"
        assert text.count(offer) == 2, "desk_call.xml's SDP offers changed"
        text = text.replace(offer, f"m=audio [media_port{rtp_listener - media_port:+d}] RTP/AVP")
    if contact_port is not None:
        own = "Contact: <sip:[desk]@[local_ip]:[local_port]>\n      Expires: 60"
        assert text.count(own) == 2, "desk_call.xml's REGISTER Contact changed"
        text = text.replace(
            own, f"Contact: <sip:[desk]@[local_ip]:{contact_port}>\n      Expires: 60"
        )
    scenario = tmp / f"{name}.xml"
    scenario.write_text(text)
    log = tmp / f"{name}-messages.log"
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        f"127.0.0.1:{system.sip_port}",
        "-sf",
        str(scenario),
        "-m",
        "1",
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-mp",
        str(media_port),
        "-au",
        desk,
        "-ap",
        DESK_PASSWORD,
        "-key",
        "desk",
        desk,
        "-key",
        "dial",
        dial,
        "-key",
        "rtp",
        str(rtp_listener),
        "-timeout",
        "40s",
        "-timeout_error",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(log),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 50)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return SippRun(
        proc.returncode if proc.returncode is not None else -1,
        err.decode(errors="replace"),
        log.read_text(errors="replace") if log.exists() else "",
    )


EventFacts = tuple[str, dict[str, object]]


def event_facts(ledger: dict[str, list[LedgerEvent]]) -> dict[str, list[EventFacts]]:
    """:meth:`System.whole_ledger` without what differs from run to run (ids, times,
    causes, lockout ends): each event as its type and its domain fields."""
    varying = {"event_id", "at", "cause", "correlation_id", "version", "until"}
    return {
        subject: [
            (
                type(event).__name__,
                {k: v for k, v in msgspec.structs.asdict(event).items() if k not in varying},
            )
            for event in events
        ]
        for subject, events in ledger.items()
    }


def prompt_codes(prompt_id: str) -> bytes:
    """The μ-law the edge sends for a bundled prompt."""
    bundled = next(p for p in prompts.bundled() if p.prompt_id == prompt_id)
    return g711.ulaw_encode(wav.parse(bundled.path.read_bytes()).data)
