"""The admin API and console: FastAPI on ``/api/v1``, the console's files at ``/``.

Every error is an RFC 9457 problem (``application/problem+json``). Callers are
authenticated by a console session cookie (HttpOnly, SameSite=Strict, signed, expiring)
or an API token (``Authorization: Bearer``); a session must echo its CSRF token in
``X-CSRF-Token`` on every state-changing request. Viewers read; only admins act.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

import msgspec
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel
from pydantic import Field as PydanticField
from starlette.exceptions import HTTPException as StarletteHTTPException

from hotdesk_contracts.commands import ClearPinLockout, LedgerCommand, LogOut
from hotdesk_contracts.directory import AdminUser, Directory
from hotdesk_contracts.events import Cause, LedgerEvent, LogoutReason
from hotdesk_ledger.errors import ConcurrencyConflict, DomainError

from .auth import (
    AuthError,
    LoginThrottle,
    Principal,
    SessionSigner,
    check_password,
    check_token,
)
from .feed import DeskFeed
from .history_pages import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    HistoryCursorError,
    HistoryPages,
    parse_before,
    parse_limit,
)
from .projections import desk_key, user_key
from .readmodels import ReadModels
from .views import desk_view, desk_views, filter_desks, user_views
from .webhooks import DeliveryLog

log = logging.getLogger(__name__)

SESSION_COOKIE = "hotdesk_session"
CSRF_COOKIE = "hotdesk_csrf"
CSRF_HEADER = "X-CSRF-Token"
PROBLEM = "application/problem+json"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

DeskPath = Annotated[str, Path(pattern=r"^HD[0-9]{4,6}$", description="a desk like HD0001")]
ExtPath = Annotated[str, Path(pattern=r"^[0-9]{2,8}$", description="an extension like 100")]

Execute = Callable[[LedgerCommand], Awaitable[list[LedgerEvent]]]


@dataclass
class AdminDeps:
    """What the API needs from the service (wired in :mod:`.main`, fakes nowhere)."""

    directory: Callable[[], Directory]
    read: ReadModels
    execute: Execute
    """Runs a ledger command (``hotdesk_ledger.handler.Ledger.execute``)."""
    signer: SessionSigner
    deliveries: DeliveryLog
    feed: DeskFeed
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    extra_admins: list[AdminUser] = field(default_factory=list)
    """The generated first admin, when the directory names none."""
    ready: Callable[[], bool] = lambda: True
    secure_cookies: bool = False
    """Mark cookies ``Secure`` (when served over HTTPS)."""
    keepalive_seconds: float = 15.0
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    history: HistoryPages | None = None
    """History pages; by default the read model, then the ledger, on ``read``'s NATS."""

    def admins(self) -> list[AdminUser]:
        """The admins who may sign in: the directory's, or the generated first one."""
        return [*self.directory().admins, *self.extra_admins]


class Problem(Exception):
    """An RFC 9457 problem to answer with."""

    def __init__(self, status: int, title: str, detail: str, kind: str = "about:blank") -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind


def problem_response(
    status: int,
    title: str,
    detail: str,
    instance: str,
    kind: str = "about:blank",
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An ``application/problem+json`` response (RFC 9457 section 3)."""
    body: dict[str, Any] = {
        "type": kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    body.update(extra or {})
    return Response(msgspec.json.encode(body), status, headers=headers, media_type=PROBLEM)


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status, media_type="application/json")


class HistoryEntryDoc(BaseModel):
    """One ledger event of a history (``HistoryEntry``)."""

    seq: int = PydanticField(description="the event's ledger stream sequence")
    at: datetime
    type: str = PydanticField(description="LoggedIn, LoggedOut, Roamed, PinRejected, ...")
    desk: str
    user: str
    actor: str = PydanticField(description="who caused it: user:100, admin:alice, system:...")
    reason: str = PydanticField("", description="a logout's reason")
    from_user: str = PydanticField("", description="a roam's previous user")
    until: datetime | None = PydanticField(None, description="a PIN lockout's end")
    call_id: str = ""


class HistoryPageDoc(BaseModel):
    """One page of a desk's or user's history, newest first."""

    desk: str | None = PydanticField(None, description="the desk (desk histories)")
    user: str | None = PydanticField(None, description="the extension (user histories)")
    entries: list[HistoryEntryDoc]
    next_before: int | None = PydanticField(
        description="the cursor of the next, older page (its ``before``); null on the last page"
    )
    next: str | None = PydanticField(
        description='the next page\'s URL (also sent as a ``Link: <...>; rel="next"`` header)'
    )


_HISTORY_PAGING = (
    "Pages: the first page (no ``before``) comes from the history read model; follow"
    " ``next`` (or pass ``before=<next_before>``) for older events, read from the"
    " ledger stream, until ``next`` is null. Every event the ledger holds is reachable."
    " A page may hold fewer than ``limit`` entries and still have a ``next`` when it"
    " stopped after examining its share of a large ledger."
)
Before = Annotated[
    str | None,
    Query(
        description=(
            "cursor: only events with a ledger sequence below this (a previous page's"
            " ``next_before``); a whole number of 1 or more, else 400"
        ),
        examples=["1234"],
    ),
]
Limit = Annotated[
    str | None,
    Query(
        description=f"entries per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}); else 400",
        examples=[str(DEFAULT_LIMIT)],
    ),
]
_PROBLEM_400: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "a bad ``before`` or ``limit``",
        "content": {PROBLEM: {"schema": {"type": "object"}}},
    }
}


class Login(BaseModel):
    """Console sign-in."""

    username: str
    password: str


async def principal(request: Request) -> Principal:
    """The authenticated caller, or a 401 problem; a session acting without its CSRF
    token is refused with 403."""
    deps: AdminDeps = request.app.state.deps
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(401, "Unauthorized", "use 'Authorization: Bearer <token>'")
        try:
            return check_token(deps.directory().api_tokens, token.strip())
        except AuthError as exc:
            raise Problem(401, "Unauthorized", str(exc)) from exc
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Problem(401, "Unauthorized", "sign in or send an API token")
    try:
        who = deps.signer.check(cookie, deps.clock())
    except AuthError as exc:
        raise Problem(401, "Unauthorized", str(exc)) from exc
    # The directory decides the role now: a removed or demoted admin loses it at once.
    current = next((a for a in deps.admins() if a.username == who.name), None)
    if current is None:
        raise Problem(401, "Unauthorized", "this admin account no longer exists")
    who = Principal(name=who.name, role=current.role, via="session", csrf=who.csrf)
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or sent != who.csrf or request.cookies.get(CSRF_COOKIE) != sent:
            raise Problem(403, "Forbidden", f"missing or wrong {CSRF_HEADER} header")
    return who


async def actor(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The caller, if allowed to act (role ``admin``); otherwise a 403 problem."""
    if not who.can_act:
        raise Problem(403, "Forbidden", f"{who.name} is a viewer and may not act")
    return who


Who = Annotated[Principal, Depends(principal)]
Actor = Annotated[Principal, Depends(actor)]


def create_app(deps: AdminDeps) -> FastAPI:
    """The admin API and console as an ASGI app."""
    app = FastAPI(
        title="hotdesk admin API",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.deps = deps

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="hotdesk"'} if exc.status == 401 else None
        return problem_response(
            exc.status, exc.title, exc.detail, request.url.path, exc.kind, headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        return problem_response(exc.status_code, title, str(exc.detail), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return problem_response(
            422, "Unprocessable Content", detail, request.url.path, extra={"errors": errors}
        )

    @app.post("/api/v1/session", tags=["session"])
    async def sign_in(body: Login) -> Response:
        """Sign in to the console: sets the session cookie and returns the CSRF token."""
        now = deps.clock()
        until = deps.throttle.blocked_until(body.username, now)
        if until is not None:
            raise Problem(
                429,
                "Too Many Requests",
                f"too many failed sign-ins; try again after {until.isoformat()}",
            )
        try:
            who = check_password(deps.admins(), body.username, body.password)
        except AuthError as exc:
            deps.throttle.failed(body.username, now)
            log.warning("admin sign-in refused", extra={"username": body.username})
            raise Problem(401, "Unauthorized", str(exc)) from exc
        deps.throttle.succeeded(body.username)
        log.info("admin signed in", extra={"username": who.name, "role": who.role})
        value, csrf = deps.signer.issue(who, deps.clock())
        response = _json({"user": who.name, "role": who.role, "csrf_token": csrf})
        max_age = int(deps.signer.ttl.total_seconds())
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=deps.secure_cookies,
            path="/",
        )
        # Readable by the console's script: it echoes it in X-CSRF-Token.
        response.set_cookie(
            CSRF_COOKIE,
            csrf,
            max_age=max_age,
            samesite="strict",
            secure=deps.secure_cookies,
            path="/",
        )
        return response

    @app.get("/api/v1/session", tags=["session"])
    async def whoami(who: Who) -> Response:
        """Who is signed in (or which token is used)."""
        return _json({"user": who.name, "role": who.role, "via": who.via, "csrf_token": who.csrf})

    @app.delete("/api/v1/session", tags=["session"])
    async def sign_out(who: Who) -> Response:
        """Sign out of the console."""
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    # --- desks ----------------------------------------------------------------------
    async def views() -> list[Any]:
        return desk_views(deps.directory(), await deps.read.seats(), await deps.read.statuses())

    def known_desk(desk: str) -> None:
        if deps.directory().desk(desk) is None:
            raise Problem(404, "Not Found", f"no desk {desk} in the directory")

    def known_user(ext: str) -> None:
        if deps.directory().extension(ext) is None:
            raise Problem(404, "Not Found", f"no extension {ext} in the directory")

    @app.get("/api/v1/desks", tags=["desks"])
    async def list_desks(
        who: Who,
        state: Annotated[str | None, Query(pattern="^(idle|logged_in)$")] = None,
        online: bool | None = None,
        user: Annotated[str | None, Query(pattern=r"^[0-9]{2,8}$")] = None,
    ) -> Response:
        """Every desk with its state, user, since and online; filterable."""
        return _json({"desks": filter_desks(await views(), state=state, online=online, user=user)})

    @app.get("/api/v1/desks/{desk}", tags=["desks"])
    async def get_desk(desk: DeskPath, who: Who) -> Response:
        """One desk."""
        known_desk(desk)
        seat = await deps.read.seat(desk)
        status = await deps.read.status(desk)
        return _json(
            desk_view(
                deps.directory(),
                desk,
                {desk: seat} if seat else {},
                {desk: status} if status else {},
            )
        )

    pages = deps.history or HistoryPages(deps.read.js, deps.read)

    async def history_page(
        request: Request, owner: dict[str, str], key: str, before: str | None, limit: str | None
    ) -> Response:
        try:
            size = parse_limit(limit)
            page = await pages.page(key, parse_before(before), size)
        except HistoryCursorError as exc:
            raise Problem(400, "Bad Request", str(exc)) from exc
        link = (
            None
            if page.next_before is None
            else f"{request.url.path}?before={page.next_before}&limit={size}"
        )
        body = {**owner, "entries": page.entries, "next_before": page.next_before, "next": link}
        response = _json(body)
        if link is not None:
            response.headers["Link"] = f'<{link}>; rel="next"'
        return response

    @app.get(
        "/api/v1/desks/{desk}/history",
        tags=["desks"],
        response_model=HistoryPageDoc,
        responses=_PROBLEM_400,
        description=(
            "Every ledger event at the desk, newest first, with reasons and actors. "
            + _HISTORY_PAGING
        ),
    )
    async def desk_history(
        desk: DeskPath, who: Who, request: Request, before: Before = None, limit: Limit = None
    ) -> Response:
        """A desk's history, one page."""
        known_desk(desk)
        return await history_page(request, {"desk": desk}, desk_key(desk), before, limit)

    @app.post("/api/v1/desks/{desk}/logout", tags=["desks"])
    async def force_logout(
        desk: DeskPath, who: Actor, user: Annotated[str | None, Query()] = None
    ) -> Response:
        """Log out whoever sits at the desk (``LoggedOut`` reason ``admin``).

        ``user``, when given, must be who sits there (guards a stale screen).
        """
        known_desk(desk)
        command = LogOut(
            desk=desk,
            reason=LogoutReason.ADMIN,
            user=user,
            **_command_fields(who, deps.clock()),
        )
        events = await _run(deps.execute, command)
        log.info("admin logout", extra={"desk": desk, "actor": who.actor})
        return _json({"desk": desk, "events": events})

    # --- users ----------------------------------------------------------------------
    @app.get("/api/v1/users", tags=["users"])
    async def list_users(
        who: Who,
        locked: bool | None = None,
        seated: bool | None = None,
    ) -> Response:
        """Every extension with its desk (or none) and lockout state."""
        rows = user_views(deps.directory(), await deps.read.users(), deps.clock())
        rows = [
            r
            for r in rows
            if (locked is None or r.locked == locked)
            and (seated is None or (r.desk is not None) == seated)
        ]
        return _json({"users": rows})

    @app.get("/api/v1/users/{ext}", tags=["users"])
    async def get_user(ext: ExtPath, who: Who) -> Response:
        """One user."""
        known_user(ext)
        rows = user_views(deps.directory(), await deps.read.users(), deps.clock())
        return _json(next(r for r in rows if r.user == ext))

    @app.get(
        "/api/v1/users/{ext}/history",
        tags=["users"],
        response_model=HistoryPageDoc,
        responses=_PROBLEM_400,
        description=(
            "Every ledger event of the user (logins, logouts, roams from and to them, PIN"
            " events), newest first, with reasons and actors. " + _HISTORY_PAGING
        ),
    )
    async def user_history(
        ext: ExtPath, who: Who, request: Request, before: Before = None, limit: Limit = None
    ) -> Response:
        """A user's history, one page."""
        known_user(ext)
        return await history_page(request, {"user": ext}, user_key(ext), before, limit)

    @app.post("/api/v1/users/{ext}/lockout/clear", tags=["users"])
    async def clear_lockout(ext: ExtPath, who: Actor) -> Response:
        """Lift the user's PIN lockout (``PinLockoutCleared``)."""
        known_user(ext)
        command = ClearPinLockout(user=ext, **_command_fields(who, deps.clock()))
        events = await _run(deps.execute, command)
        log.info("admin cleared a lockout", extra={"user": ext, "actor": who.actor})
        return _json({"user": ext, "events": events})

    # --- webhooks, live events, health ----------------------------------------------
    @app.get("/api/v1/webhooks/deliveries", tags=["webhooks"])
    async def deliveries(who: Who, webhook: str | None = None) -> Response:
        """Recent webhook delivery attempts, newest first."""
        return _json({"deliveries": list(reversed(await deps.deliveries.recent(webhook)))})

    @app.get("/api/v1/events", tags=["live"])
    async def events(who: Who, request: Request) -> StreamingResponse:
        """Server-Sent Events: ``event: desk`` with the desk's row on every change."""

        async def stream() -> AsyncIterator[bytes]:
            async with deps.feed.subscribe() as queue:
                yield b"retry: 2000\n\n"
                while not await request.is_disconnected():
                    try:
                        view = await asyncio.wait_for(queue.get(), deps.keepalive_seconds)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    yield b"event: desk\ndata: " + msgspec.json.encode(view) + b"\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        if not deps.ready():
            return problem_response(
                503, "Service Unavailable", "read models are catching up", request.url.path
            )
        return _json({"status": "ready"})

    # --- console --------------------------------------------------------------------
    console = resources.files("hotdesk_presence") / "console"
    media = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return FileResponse(str(console / "index.html"), media_type="text/html")

    @app.get("/console/{name}", include_in_schema=False)
    async def asset(name: Annotated[str, Path(pattern=r"^[a-z]+\.(js|css)$")]) -> Response:
        path = console / name
        if not path.is_file():
            raise Problem(404, "Not Found", f"no console file {name}")
        return FileResponse(str(path), media_type=media["." + name.rsplit(".", 1)[1]])

    return app


def _command_fields(who: Principal, now: datetime) -> dict[str, Any]:
    cid = uuid.uuid4().hex
    return {
        "command_id": cid,
        "at": now,
        "cause": Cause(actor=who.actor),
        "correlation_id": cid,
    }


async def _run(execute: Execute, command: LedgerCommand) -> list[LedgerEvent]:
    try:
        return await execute(command)
    except ConcurrencyConflict as exc:
        raise Problem(503, "Service Unavailable", f"the ledger is busy, retry ({exc})") from exc
    except DomainError as exc:
        raise Problem(409, "Conflict", exc.message, f"urn:hotdesk:problem:{exc.code}") from exc
