"""The provisioning HTTP server (port 8081): phones fetch their files here.

Order of decisions, so that nothing tells a stranger whether a MAC exists:

1. rate limit per client address (429);
2. the request must be a file some vendor's phone asks for (else 404, the same for all);
3. every such request without valid credentials gets the same 401 challenge, whether
   the MAC in the name is known or not (an unknown MAC is reported to admins here);
4. valid credentials identify one desk; any file but that desk's own (or its model's
   common files) is 404 — the same answer for an unknown MAC and another desk's MAC.

The desk's state comes from :class:`DeskSeats` (fed from the ledger), so a fetch always
renders from the newest state this process has seen.

Every request is a ``GET provisioning file`` server span. Its parent is the request's
own ``traceparent`` header when it has one; else, for an authenticated desk with a
reprovision in flight, the reprovision's trace (``trace_of``), so the fetch a
check-sync NOTIFY asked for joins the trace of the login that caused it; else none.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hotdesk_contracts.directory import Desk, Directory, ProvisioningSettings, SipSettings
from hotdesk_contracts.messages import UnknownDeviceSeen
from hotdesk_runtime.telemetry import (
    DESK,
    ActiveSpan,
    context_of,
    extract_context,
    worth_a_span,
)

from . import httpauth
from .nonces import LocalNonceCounts, NonceCounts, parse_nc
from .ratelimit import RateLimiter
from .render import Files, config_version, render
from .seats import DeskSeats
from .vendors import Detection, FileRole, detect

log = logging.getLogger("hotdesk.provisioner.http")
_tracer = trace.get_tracer("hotdesk_provisioner")

UNKNOWN_DEVICE_REPORT_SECONDS = 3600.0
UNKNOWN_DEVICE_REPORTS_PER_MINUTE = 30
"""Reports of new unknown devices per minute, all sources together: they come before
any authentication, so a flood of invented MACs must not become a flood of events."""
UNKNOWN_DEVICE_FIELD_CHARS = 256
"""User-Agent and path are cut to this many characters in reports and logs."""
"""Report the same unknown MAC at most once an hour."""


@dataclass(frozen=True, slots=True)
class ServedFile:
    """A desk's own file went out: what the reprovision tracker waits for."""

    desk: str
    filename: str
    config_version: str
    at: float


@dataclass(frozen=True, slots=True)
class Rendered:
    files: Files
    version: str


UnknownDeviceReporter = Callable[[UnknownDeviceSeen], Awaitable[None]]
ServedListener = Callable[[ServedFile], None]
LearnedListener = Callable[[str, str, str], None]
"""(desk, vendor, model) as a desk without a configured vendor showed itself."""
TraceOf = Callable[[str], str]
"""A desk's reprovision trace as a W3C ``traceparent`` (``""``: none in flight)."""


class ProvisioningServer:
    """Holds what the HTTP app needs; ``app`` is the ASGI application."""

    def __init__(
        self,
        *,
        directory: Callable[[], Directory],
        settings: ProvisioningSettings,
        sip: SipSettings,
        seats: DeskSeats,
        nonce_key: bytes,
        origin: str,
        report_unknown: UnknownDeviceReporter | None = None,
        on_served: ServedListener | None = None,
        clock: Callable[[], float] = time.time,
        provisioning_url: str = "",
        nonce_lifetime_seconds: float = 300.0,
        nonce_counts: NonceCounts | None = None,
        on_learned: LearnedListener | None = None,
        trace_of: TraceOf | None = None,
    ) -> None:
        self._directory = directory
        self._trace_of = trace_of
        self.settings = settings
        self.sip = sip
        self.seats = seats
        self.nonce_key = nonce_key
        """Signs digest nonces; replicas that share it accept each other's nonces."""
        self.nonce_counts: NonceCounts = nonce_counts or LocalNonceCounts(
            horizon=nonce_lifetime_seconds + 60
        )
        """The highest ``nc`` seen per nonce; shared between replicas to refuse replays."""
        self._on_learned = on_learned
        self._origin = origin
        self._report_unknown = report_unknown
        self._served_listeners: list[ServedListener] = [on_served] if on_served else []
        self._clock = clock
        self._nonce_lifetime = nonce_lifetime_seconds
        scheme = "https" if settings.tls_cert else "http"
        self.provisioning_url = (
            provisioning_url or f"{scheme}://{sip.advertised_host}:{settings.port}"
        )
        self._limiter = RateLimiter(settings.rate_limit_per_minute)
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self._unknown_reported: dict[str, float] = {}
        self._unknown_window = (-1, 0)
        """(minute, reports in it): the global cap on unknown-device reports."""
        self._learned: dict[str, tuple[str, str]] = {}
        self._cache: dict[tuple[str, str | None, str, str], Rendered] = {}
        self._cache_directory: Directory | None = None
        self._users: dict[str, Desk] = {}
        self._macs: dict[str, Desk] = {}
        self.app = Starlette(
            routes=[
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/{path:path}", self._fetch, methods=["GET"]),
            ]
        )

    # --- what the reprovisioner asks -------------------------------------------------
    def on_served(self, listener: ServedListener) -> None:
        """Call ``listener`` for every desk file served."""
        self._served_listeners.append(listener)

    def learn(self, desk: str, vendor: str, model: str) -> None:
        """Take the vendor and model a desk showed (to this or another replica)."""
        self._learned[desk] = (vendor, model)

    def vendor_of(self, desk: Desk) -> tuple[str, str]:
        """(vendor, model): from the config, else as the phone last showed itself."""
        learned = self._learned.get(desk.name, ("", ""))
        return desk.vendor or learned[0], desk.model or learned[1]

    def render_desk(self, desk: Desk, directory: Directory | None = None) -> Rendered | None:
        """The desk's files for its newest known state; ``None`` if its vendor is unknown.

        With ``directory`` (an older revision), the files as they were under it, for
        the seat held now (not cached).
        """
        vendor, model = self.vendor_of(desk)
        if not vendor:
            return None
        current = self._current_directory()
        user = self.seats.user_at(desk.name)
        key = (desk.name, user, vendor, model)
        other = directory is not None and directory is not current
        cached = None if other else self._cache.get(key)
        if cached is not None:
            return cached
        source = directory if directory is not None else current
        seated = source.extension(user) if user else None
        target = msgspec.structs.replace(desk, vendor=vendor, model=model)
        files = render(target, source, seated, self.sip, provisioning_url=self.provisioning_url)
        rendered = Rendered(files=files, version=config_version(files))
        if other:
            return rendered
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = rendered
        return rendered

    # --- HTTP ---------------------------------------------------------------------------
    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _fetch(self, request: Request) -> Response:
        started = time.time_ns()
        now = self._clock()
        client = self.client_address(request)
        admitted = await self._admit(request, client, now)
        desk = admitted[0] if isinstance(admitted, tuple) else None
        parent = self._trace_parent(request, desk)
        if not worth_a_span(parent):  # no exporter and no trace to continue
            if isinstance(admitted, Response):
                return admitted
            return self._serve(*admitted, client, now)
        attributes = {"http.request.method": request.method, "url.path": request.url.path}
        if desk is not None:
            attributes[DESK] = desk.name
        with ActiveSpan(
            _tracer,
            "GET provisioning file",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=started,
            attributes=attributes,
        ) as span:
            if isinstance(admitted, Response):
                response = admitted
            else:
                response = self._serve(*admitted, client, now)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    def _trace_parent(self, request: Request, desk: Desk | None) -> otel_context.Context:
        if desk is not None and self._trace_of is not None and "traceparent" not in request.headers:
            return context_of(self._trace_of(desk.name))
        return extract_context(request.headers)

    async def _admit(
        self, request: Request, client: str, now: float
    ) -> tuple[Desk, Detection] | Response:
        """The desk asking and the file it asks for, or the refusal to answer with."""
        if not self._limiter.allow(client, now):
            log.warning("provisioning rate limit", extra={"client": client})
            return Response(
                "too many requests\n",
                status_code=429,
                headers={"Retry-After": str(self._limiter.retry_after(now))},
            )
        path = request.url.path
        if not _is_plain_path(request.scope.get("raw_path") or path.encode(), path):
            log.warning("provisioning path refused", extra={"client": client})
            return _not_found()
        agent = request.headers.get("user-agent", "")
        found = detect(path, agent)
        if found is None:
            return _not_found()
        self._current_directory()
        if found.mac is not None and found.mac not in self._macs:
            await self._unknown_device(found, agent, client, path, now)
        desk = await self._authenticate(request, now)
        if isinstance(desk, Response):
            return desk
        if not _may_fetch(desk, found):
            return _not_found()
        return desk, found

    def _serve(self, desk: Desk, found: Detection, client: str, now: float) -> Response:
        if self._learned.get(desk.name) != (found.vendor, found.model):
            self._learned[desk.name] = (found.vendor, found.model)
            if not desk.vendor and self._on_learned is not None:
                self._on_learned(desk.name, found.vendor, found.model)
        rendered = self.render_desk(desk)
        if rendered is None or found.filename not in rendered.files:
            return _not_found()
        trace.get_current_span().set_attribute("hotdesk.config_version", rendered.version)
        if found.role is FileRole.DESK:
            served = ServedFile(desk.name, found.filename, rendered.version, now)
            for listener in self._served_listeners:
                listener(served)
        log.info(
            "provisioning file served",
            extra={
                "desk": desk.name,
                "file": found.filename,
                "config_version": rendered.version,
                "client": client,
            },
        )
        return Response(
            rendered.files[found.filename],
            media_type=_media_type(found.filename),
            headers={"ETag": f'"{rendered.version}"', "Cache-Control": "no-store"},
        )

    def client_address(self, request: Request) -> str:
        """The phone's address: ``X-Forwarded-For`` counts only from a trusted proxy.

        Walk the header right to left past trusted proxies: the first address not
        trusted is the client (anything further left could be forged by it).
        """
        peer = request.client.host if request.client else ""
        if not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _is_trusted(self, address: str) -> bool:
        if not self._trusted:
            return False  # the common case: no proxy in front, nothing to parse
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    async def _authenticate(self, request: Request, now: float) -> Desk | Response:
        header = request.headers.get("authorization")
        if not header:
            return self._challenge(now)
        try:
            creds = httpauth.parse_authorization(header)
        except httpauth.AuthHeaderError:
            return self._challenge(now)
        if creds.scheme != self.settings.auth:
            return self._challenge(now)
        desk = self._users.get(creds.username)
        # An unknown user is checked against a throwaway password, so that it costs the
        # same as a known one and fails the same way.
        password = _provisioning_password(desk) if desk else "\0unknown\0"
        verdict = httpauth.verify(
            creds,
            password,
            request.method,
            request.url.path,
            self.nonce_key,
            now,
            self._nonce_lifetime,
            allow_legacy=self.settings.allow_legacy_digest,
        )
        if verdict is httpauth.Verdict.STALE and desk is not None:
            return self._challenge(now, stale=True)
        if verdict is not httpauth.Verdict.OK or desk is None:
            return self._challenge(now)
        if creds.scheme == "digest" and "nc" in creds.params:
            # RFC 7616 §5.12: a captured request replayed with its nonce and nc is
            # refused, on whichever replica it lands.
            nc = parse_nc(creds.params["nc"])
            if nc is None or not await self.nonce_counts.admit(creds.params["nonce"], nc, now):
                log.warning(
                    "digest nonce count not above the last seen",
                    extra={"desk": desk.name, "client": self.client_address(request)},
                )
                return self._challenge(now)
        return desk

    def _challenge(self, now: float, *, stale: bool = False) -> Response:
        return Response(
            "authentication required\n",
            status_code=401,
            headers={
                "WWW-Authenticate": httpauth.challenge(
                    self.settings.auth, self.nonce_key, now, stale=stale
                )
            },
        )

    async def _unknown_device(
        self, found: Detection, agent: str, client: str, path: str, now: float
    ) -> None:
        assert found.mac is not None
        last = self._unknown_reported.get(found.mac)
        if last is not None and now - last < UNKNOWN_DEVICE_REPORT_SECONDS:
            return
        minute, reports = self._unknown_window
        if minute != int(now // 60):
            minute, reports = int(now // 60), 0
        if reports >= UNKNOWN_DEVICE_REPORTS_PER_MINUTE:
            return
        self._unknown_window = (minute, reports + 1)
        if len(self._unknown_reported) > 10_000:
            self._unknown_reported.clear()
        self._unknown_reported[found.mac] = now
        agent = _truncate(agent)
        path = _truncate(path)
        log.warning(
            "unknown device asked for provisioning",
            extra={"mac": found.mac, "user_agent": agent, "client": client},
        )
        if self._report_unknown is not None:
            await self._report_unknown(
                UnknownDeviceSeen(
                    at=datetime.fromtimestamp(now, UTC),
                    origin=self._origin,
                    mac=found.mac,
                    user_agent=agent,
                    address=client,
                    path=path,
                )
            )

    def _current_directory(self) -> Directory:
        directory = self._directory()
        if directory is not self._cache_directory:
            self._cache.clear()
            self._cache_directory = directory
            self._users = {(d.provisioning_user or d.name): d for d in directory.desks}
            self._macs = {d.mac.lower(): d for d in directory.desks}
        return directory


def _provisioning_password(desk: Desk) -> str:
    return desk.provisioning_password or desk.sip_password


def _may_fetch(desk: Desk, found: Detection) -> bool:
    """A desk may fetch its own files and its vendor's common files, nothing else."""
    if desk.vendor and desk.vendor != found.vendor:
        return False
    if found.role is FileRole.DESK:
        return found.mac == desk.mac.lower()
    return found.mac is None or found.mac == desk.mac.lower()


def _is_plain_path(raw_path: bytes, path: str) -> bool:
    """Whether a request path is free of dot segments, backslashes and control bytes.

    Files are rendered in memory, but a path such as ``/../x.cfg`` is never one a
    phone sends (clients remove dot segments, RFC 3986 §5.2.4), so it is refused before
    it reaches detection, logs or a proxy cache; both the raw and the percent-decoded
    forms are checked, so ``%2e%2e`` and ``%2f`` do not slip through.
    """
    raw = raw_path.split(b"?", 1)[0].decode("latin-1")
    decoded_raw = urllib.parse.unquote(raw) if "%" in raw else raw
    return not (_UNSAFE_PATH.search(decoded_raw) or _UNSAFE_PATH.search(path))


_UNSAFE_PATH = re.compile(r"[\x00-\x1f\x7f\\]|(?:^|/)\.\.?(?:/|$)")
"""A control byte, a backslash, or a ``.`` or ``..`` segment."""


def _truncate(text: str) -> str:
    return text[:UNKNOWN_DEVICE_FIELD_CHARS]


def _not_found() -> Response:
    return Response("not found\n", status_code=404)


def _media_type(filename: str) -> str:
    if filename.endswith((".xml", ".htm")):
        return "application/xml"
    return "text/plain"
