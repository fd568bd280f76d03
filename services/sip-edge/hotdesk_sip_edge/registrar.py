"""The registrar (RFC 3261 §10.3): digest-authenticated REGISTER for desks and extensions.

:func:`apply_register` is the pure core: current bindings + a REGISTER → new bindings or
a refusal. :class:`Registrar` adds authentication and the location store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .auth import Authenticator, PasswordLookup, Verdict
from .location import Binding, ConcurrentUpdate, LocationStore, live
from .sip.headers import HeaderError, NameAddr, get_param, serialize_params
from .sip.message import SipRequest, SipResponse, response_to
from .sip.transport import Source

log = logging.getLogger("hotdesk.sip_edge.registrar")


class RegisterRefused(Exception):
    """A REGISTER that cannot be applied; carries the response to send."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(frozen=True, slots=True)
class RegisterLimits:
    """Expiry bounds from ``config.sip``."""

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600


def _contact_text(contact: NameAddr) -> str:
    params = tuple((k, v) for k, v in contact.params if k.lower() != "expires")
    return f"<{contact.raw_uri}>{serialize_params(params)}"


def apply_register(
    request: SipRequest,
    current: list[Binding],
    *,
    now: float,
    source: Source,
    limits: RegisterLimits,
    edge: str = "",
    behind_nat: bool = False,
) -> list[Binding]:
    """The bindings after ``request`` (RFC 3261 §10.3 steps 6-8).

    Raises :class:`RegisterRefused` for ``*`` with a non-zero Expires (400), an expiry
    below the minimum (423 with Min-Expires), or an out-of-order CSeq (500).
    """
    try:
        contacts = request.contacts()
        cseq = request.cseq.seq
    except HeaderError as exc:
        raise RegisterRefused(400, "Bad Request") from exc
    header_expires = request.headers.get("Expires")
    default = int(header_expires) if header_expires is not None else limits.default_expires
    bindings = live(current, now)
    call_id = request.call_id
    if contacts is None:
        # RFC 3261 §10.3 step 6: "*" only with Expires: 0, removes every binding.
        if header_expires != "0" or len(request.headers.get_all("Contact")) != 1:
            raise RegisterRefused(400, "Bad Request")
        for b in bindings:
            if b.call_id == call_id and cseq <= b.cseq:
                raise RegisterRefused(500, "Server Internal Error")
        return []
    path = [str(entry) for entry in request.routes("Path")]
    user_agent = request.headers.get("User-Agent") or ""
    for contact in contacts:
        if contact.uri is None:
            raise RegisterRefused(400, "Bad Request")
        raw = get_param(contact.params, "expires")
        expires = int(raw) if raw else default
        if 0 < expires < limits.min_expires:
            raise RegisterRefused(
                423, "Interval Too Brief", (("Min-Expires", str(limits.min_expires)),)
            )
        expires = min(expires, limits.max_expires)
        instance = contact.instance or ""
        reg_id = contact.reg_id or ""
        kept: list[Binding] = []
        for b in bindings:
            same = (b.uri == contact.raw_uri) or (
                instance and b.instance == instance and b.reg_id == reg_id
            )
            if not same:
                kept.append(b)
                continue
            # RFC 3261 §10.3 step 7: an older or repeated CSeq for the same Call-ID.
            if b.call_id == call_id and cseq <= b.cseq:
                raise RegisterRefused(500, "Server Internal Error")
        bindings = kept
        if expires > 0:
            bindings.append(
                Binding(
                    contact=_contact_text(contact),
                    uri=contact.raw_uri,
                    expires_at=now + expires,
                    call_id=call_id,
                    cseq=cseq,
                    path=path,
                    instance=instance,
                    reg_id=reg_id,
                    transport=source.transport,
                    source_host=source.host,
                    source_port=source.port,
                    user_agent=user_agent,
                    edge=edge,
                    behind_nat=behind_nat,
                )
            )
    return bindings


def ok_response(request: SipRequest, bindings: list[Binding], now: float) -> SipResponse:
    """The 200 OK listing every current binding with its remaining expiry."""
    response = response_to(request, 200, "OK", to_tag=_tag(request))
    for b in bindings:
        response.headers.add("Contact", f"{b.contact};expires={max(0, int(b.expires_at - now))}")
    if bindings and any(b.path for b in bindings):
        for entry in bindings[-1].path:
            # RFC 3327 §5.3: echo the Path the binding was stored with.
            response.headers.add("Path", entry)
    return response


def _tag(request: SipRequest) -> str:
    return f"r{abs(hash((request.call_id, request.headers.get('CSeq')))) % 10**10}"


RegistrationListener = Callable[[str, str, list[Binding], Source, str], Awaitable[None]]
"""(aor, kind, live bindings, source, user agent) after a change."""


class Registrar:
    """Handles REGISTER requests: authenticate, apply, store, announce."""

    def __init__(
        self,
        *,
        domain_users: PasswordLookup,
        auth: Authenticator,
        store: LocationStore,
        limits: RegisterLimits,
        on_change: RegistrationListener,
        edge: str = "",
    ) -> None:
        self._passwords = domain_users
        self._auth = auth
        self._store = store
        # A store may offer a cheaper read for read-modify-write (its own last write,
        # checked by the revision on save); a failed save retries from the store.
        self._load_first = getattr(store, "load_for_update", store.load)
        self._limits = limits
        self._on_change = on_change
        self._edge = edge
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        """AOR -> (lock, requests holding or waiting for it)."""
        self._expiry: dict[str, float] = {}
        """AOR -> the earliest expiry among the bindings this edge wrote."""
        self.stats: Counter[str] = Counter()
        """``ok`` (every REGISTER answered 200) and ``kind_<kind>`` per binding change."""

    def screen(self, request: SipRequest, source: Source, now: float) -> SipResponse | str:
        """What needs no location store: the answer to a REGISTER that is challenged
        (401) or refused (400, 403), else the authenticated AOR to :meth:`bind`."""
        verdict = self._auth.check(request, "Authorization", self._passwords, source.host, now)
        if verdict.verdict is Verdict.CHALLENGE:
            response = response_to(request, 401, "Unauthorized", to_tag=_tag(request))
            for value in verdict.challenges:
                response.headers.add("WWW-Authenticate", value)
            return response
        if verdict.verdict is Verdict.BAD_REQUEST:
            return response_to(request, 400, "Bad Request", to_tag=_tag(request))
        if verdict.verdict is Verdict.FORBIDDEN:
            return response_to(request, 403, "Forbidden", to_tag=_tag(request))
        try:
            to = request.to
        except HeaderError:
            return response_to(request, 400, "Bad Request")
        if to.uri is None or to.uri.scheme not in ("sip", "sips"):
            # RFC 4475 §3.3.4: a REGISTER To must be a SIP URI.
            return response_to(request, 400, "Bad Request", to_tag=_tag(request))
        aor = to.uri.user_unescaped()
        if aor != verdict.identity:
            # An authenticated desk may only register its own AOR.
            return response_to(request, 403, "Forbidden", to_tag=_tag(request))
        return aor

    async def bind(self, request: SipRequest, source: Source, now: float, aor: str) -> SipResponse:
        """Apply a REGISTER that :meth:`screen` let through for ``aor`` and store the
        bindings; the response says which are current."""
        # One REGISTER per AOR at a time on this edge: concurrent ones would only race
        # for the same KV revision. Other replicas are handled by the revision check.
        held = self._locks.get(aor)
        lock, users = (asyncio.Lock(), 0) if held is None else held
        self._locks[aor] = (lock, users + 1)
        try:
            async with lock:
                return await self._apply(request, source, now, aor)
        finally:
            lock, users = self._locks[aor]
            if users <= 1:
                del self._locks[aor]
            else:
                self._locks[aor] = (lock, users - 1)

    async def _apply(
        self, request: SipRequest, source: Source, now: float, aor: str
    ) -> SipResponse:
        for attempt in range(5):
            current, revision = await (self._load_first if attempt == 0 else self._store.load)(aor)
            before = live(current, now)
            try:
                bindings = apply_register(
                    request,
                    current,
                    now=now,
                    source=source,
                    limits=self._limits,
                    edge=self._edge,
                    behind_nat=_behind_nat(request, source),
                )
            except RegisterRefused as refused:
                response = response_to(
                    request, refused.status, refused.reason, to_tag=_tag(request)
                )
                for name, value in refused.headers:
                    response.headers.add(name, value)
                return response
            ttl = max((b.expires_at - now for b in bindings), default=1.0) + 1.0
            try:
                await self._store.save(aor, bindings, revision, ttl)
            except ConcurrentUpdate:
                await asyncio.sleep(0)
                continue
            kind = _change_kind(before, bindings)
            if bindings:
                self._expiry[aor] = min(b.expires_at for b in bindings)
            else:
                self._expiry.pop(aor, None)
            if kind:
                await self._on_change(
                    aor, kind, bindings, source, request.headers.get("User-Agent") or ""
                )
            self.stats["ok"] += 1
            if kind:
                self.stats["kind_" + kind] += 1
            # Refreshes are the bulk of the traffic: logged at DEBUG only, changes at INFO
            # (they are also announced as RegistrationChanged).
            level = logging.DEBUG if kind in ("refreshed", "") else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "register",
                    extra={"aor": aor, "kind": kind or "unchanged", "contacts": len(bindings)},
                )
            return ok_response(request, bindings, now)
        return response_to(request, 500, "Server Internal Error", to_tag=_tag(request))

    async def sweep(self, now: float) -> None:
        """Drop the expired bindings this edge wrote and announce them as ``expired``.

        Only the edge that stored a binding sweeps it, so one expiry is announced once;
        every replica already ignores expired bindings when routing.
        """
        due = [aor for aor, at in self._expiry.items() if at <= now]
        for aor in due:
            del self._expiry[aor]
            await self._sweep_aor(aor, now)

    async def _sweep_aor(self, aor: str, now: float) -> None:
        for _ in range(5):
            current, revision = await self._store.load(aor)
            remaining = live(current, now)
            if len(remaining) == len(current):
                if remaining:
                    self._expiry[aor] = min(b.expires_at for b in remaining)
                return
            ttl = max((b.expires_at - now for b in remaining), default=1.0) + 1.0
            try:
                await self._store.save(aor, remaining, revision, ttl)
            except ConcurrentUpdate:
                continue
            if remaining:
                self._expiry[aor] = min(b.expires_at for b in remaining)
            log.info("registration expired", extra={"aor": aor, "contacts": len(remaining)})
            source = Source("", "", 0)
            await self._on_change(aor, "expired", remaining, source, "")
            return


def _behind_nat(request: SipRequest, source: Source) -> bool:
    """Whether the phone's own idea of its address differs from where it is seen."""
    try:
        via = request.top_via
    except (HeaderError, IndexError):
        return False
    if via.received is not None and via.received != via.host.strip("[]"):
        return True
    return via.rport is not None and via.rport != (via.port or 5060)


def _change_kind(before: list[Binding], after: list[Binding]) -> str:
    if not after:
        return "unregistered" if before else ""
    if {b.uri for b in after} - {b.uri for b in before}:
        return "registered"
    return "refreshed"
