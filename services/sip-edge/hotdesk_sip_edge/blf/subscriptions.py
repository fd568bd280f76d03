"""Subscriptions to the dialog event package (RFC 6665 notifier side, RFC 4235 bodies).

Pure: the SIP layer hands in the fields of a SUBSCRIBE it has already authenticated
(or not) and the current time in seconds; it gets back the response to send and the
NOTIFYs to send. Nothing here reads a clock, opens a socket or draws randomness except
through the ``new_tag`` callable given to :class:`Subscriptions`.

A subscription is a dialog (RFC 6665 sections 4.1.2 and 8.2.1): Call-ID, the subscriber's tag, our
tag, and the ``id`` parameter of ``Event``. Every NOTIFY carries the full state of the
watched extension and the subscription's own ``version`` counter, which starts at 0 and
grows by one per NOTIFY body (RFC 4235 section 4.1), independent of other subscriptions.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from .dialog_info import CONTENT_TYPE, Dialog, DialogInfoError, Document, check, document

EVENT_PACKAGE = "dialog"
DEFAULT_EXPIRES = 3600
"""RFC 4235 section 3.4: the default subscription duration for the dialog package."""

TerminationReason = Literal["timeout", "noresource", "deactivated", "rejected"]
"""RFC 6665 section 4.1.3 reasons this notifier uses:

- ``timeout``: the subscriber let it expire or unsubscribed with ``Expires: 0``;
- ``noresource``: the watched extension left the directory;
- ``deactivated``: this edge stops serving it (shutdown); the subscriber should
  subscribe again at once and reach another replica;
- ``rejected``: policy withdrew it.
"""


@dataclass(frozen=True, slots=True)
class SubscriptionKey:
    """What identifies a subscription (RFC 6665 section 4.1.2: dialog + Event id)."""

    call_id: str
    remote_tag: str
    """The subscriber's tag (From of its SUBSCRIBE)."""
    local_tag: str
    """Our tag (To of our 200 and From of our NOTIFYs)."""
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """The fields of a SUBSCRIBE that the subscription logic needs.

    ``to_tag`` is None for a new subscription and set for a refresh or unsubscribe
    inside an existing dialog. ``expires`` is the ``Expires`` header (None when absent).
    ``accept`` holds the media ranges of ``Accept`` (empty when the header is absent).
    """

    call_id: str
    from_tag: str
    to_tag: str | None
    cseq: int
    event: str
    extension: str
    """The watched extension (the Request-URI user part, resolved by the SIP layer)."""
    entity_uri: str
    """The resource URI written as ``entity`` in the bodies."""
    from_uri: str
    """The subscriber's address (From), the To of our NOTIFYs."""
    to_uri: str
    """The watched resource's address (To), the From of our NOTIFYs."""
    contact: str
    """The subscriber's Contact URI: the remote target of our NOTIFYs."""
    authenticated: bool
    event_id: str = ""
    expires: int | None = None
    accept: tuple[str, ...] = ()
    record_route: tuple[str, ...] = ()
    """Record-Route values of the SUBSCRIBE, in order (the UAS route set, RFC 3261
    section 12.1.1)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One live subscription: its dialog (its NOTIFYs are counted beside it)."""

    key: SubscriptionKey
    extension: str
    entity_uri: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...]
    expires_at: float
    remote_cseq: int


@dataclass(slots=True)
class _Live:
    """A live subscription and how many NOTIFYs it has had: the ``version`` of the next
    NOTIFY body (RFC 4235 section 4.1, from 0) and one less than its CSeq (RFC 3261
    section 12.2.1.1, from 1; NOTIFYs are the only requests we send in the dialog).

    Counted in place: a fan-out then makes no copy of the subscription per NOTIFY.
    """

    sub: Subscription
    notified: int = 0


@dataclass(frozen=True, slots=True)
class NotifyToSend:
    """A NOTIFY to send within ``subscription``'s dialog."""

    subscription: Subscription
    """The subscription as it was when the NOTIFY was made (its dialog and route set)."""
    cseq: int
    subscription_state: str
    """The ``Subscription-State`` header value (RFC 6665 section 8.2.3)."""
    version: int
    body: bytes
    content_type: str = CONTENT_TYPE

    @property
    def terminated(self) -> bool:
        """Whether this is the final NOTIFY of its subscription."""
        return self.subscription_state.startswith("terminated")


@dataclass(frozen=True, slots=True)
class SubscribeOutcome:
    """What to answer a SUBSCRIBE with, and the NOTIFY that must follow a 200.

    ``local_tag`` is the To tag of the response (a new one for a new subscription).
    ``headers`` are extra response headers (``Expires``, ``Min-Expires``,
    ``Allow-Events``, ``Accept``) as ``(name, value)`` pairs.
    """

    status: int
    reason: str
    local_tag: str | None = None
    expires: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    notify: NotifyToSend | None = None


def _refuse(status: int, reason: str, *headers: tuple[str, str]) -> SubscribeOutcome:
    return SubscribeOutcome(status=status, reason=reason, headers=headers)


def _accepts_dialog_info(accept: tuple[str, ...]) -> bool:
    if not accept:
        return True  # absent Accept: the package default, dialog-info (RFC 4235 section 3.5)
    wanted = {"*/*", "application/*", CONTENT_TYPE}
    return any(item.split(";", 1)[0].strip().lower() in wanted for item in accept)


def random_tag() -> str:
    """A fresh dialog tag (RFC 3261 section 19.3: at least 32 bits of randomness)."""
    return secrets.token_hex(8)


class Subscriptions:
    """The notifier's subscriptions for ``Event: dialog`` on one edge.

    ``extensions`` are the resources that may be watched; ``min_expires`` and
    ``max_expires`` bound the granted duration (RFC 6665 section 4.2.1.1); ``new_tag``
    makes our dialog tags.
    """

    def __init__(
        self,
        extensions: Iterable[str] = (),
        *,
        min_expires: int = 60,
        max_expires: int = DEFAULT_EXPIRES,
        new_tag: Callable[[], str] = random_tag,
    ) -> None:
        if not 0 < min_expires <= max_expires:
            raise ValueError(
                f"need 0 < min_expires <= max_expires, got {min_expires}, {max_expires}"
            )
        self.extensions = frozenset(extensions)
        self.min_expires = min_expires
        self.max_expires = max_expires
        self._new_tag = new_tag
        self._subs: dict[SubscriptionKey, _Live] = {}
        # Per-extension index: a call's state change reaches its watchers without a
        # scan of every subscription on the edge.
        self._by_ext: dict[str, dict[SubscriptionKey, _Live]] = {}
        self._dialogs: dict[str, tuple[Dialog, ...]] = {}
        # Each extension's current document per entity URI, rendered once per state
        # change: the fan-out then only writes every subscription's own version into it.
        self._documents: dict[str, dict[str, Document]] = {}

    def _put(self, live: _Live) -> None:
        key = live.sub.key
        self._subs[key] = live
        self._by_ext.setdefault(live.sub.extension, {})[key] = live

    def _remove(self, key: SubscriptionKey) -> None:
        live = self._subs.pop(key, None)
        if live is None:
            return
        keys = self._by_ext[live.sub.extension]
        del keys[key]
        if not keys:
            del self._by_ext[live.sub.extension]

    # --- queries -------------------------------------------------------------------

    def get(self, key: SubscriptionKey) -> Subscription | None:
        """The live subscription ``key``, if any."""
        live = self._subs.get(key)
        return None if live is None else live.sub

    def watching(self, extension: str) -> list[Subscription]:
        """Every live subscription to ``extension``."""
        return [live.sub for live in self._by_ext.get(extension, {}).values()]

    def __len__(self) -> int:
        return len(self._subs)

    # --- SUBSCRIBE -----------------------------------------------------------------

    def subscribe(self, request: SubscribeRequest, now: float) -> SubscribeOutcome:
        """Handle a SUBSCRIBE: a new subscription, a refresh or an unsubscribe.

        A 200 comes with the NOTIFY RFC 6665 section 4.2.2 requires right after it: the
        current state, or the final one for ``Expires: 0``. Every final response to a
        SUBSCRIBE without a To tag carries a new ``local_tag`` (RFC 3261 section 8.2.6.2).
        """
        outcome = self._decide(request, now)
        if outcome.local_tag is None and request.to_tag is None:
            outcome = replace(outcome, local_tag=self._new_tag())
        return outcome

    def _decide(self, request: SubscribeRequest, now: float) -> SubscribeOutcome:
        if request.event.lower() != EVENT_PACKAGE:
            # RFC 6665 section 4.2.1.1 (489 Bad Event) with the packages we do serve.
            return _refuse(489, "Bad Event", ("Allow-Events", EVENT_PACKAGE))
        if not request.authenticated:
            # The SIP layer challenges; a request that still is not authenticated gets the
            # same answer for known and unknown extensions, so nothing can be enumerated.
            return _refuse(403, "Forbidden")
        if not _accepts_dialog_info(request.accept):
            return _refuse(406, "Not Acceptable", ("Accept", CONTENT_TYPE))
        expires = DEFAULT_EXPIRES if request.expires is None else request.expires
        if expires < 0:
            return _refuse(400, "Bad Request: negative Expires")
        if 0 < expires < self.min_expires:
            # RFC 6665 section 4.2.1.1: 423 with Min-Expires; zero is an unsubscribe/fetch.
            return _refuse(423, "Interval Too Brief", ("Min-Expires", str(self.min_expires)))
        expires = min(expires, self.max_expires)
        if request.to_tag is None:
            return self._create(request, expires, now)
        return self._refresh(request, expires, now)

    def _create(self, request: SubscribeRequest, expires: int, now: float) -> SubscribeOutcome:
        if request.extension not in self.extensions:
            return _refuse(404, "Not Found")
        try:
            document(request.entity_uri, "full", [])
        except DialogInfoError as exc:
            return _refuse(400, f"Bad Request: {exc}")
        key = SubscriptionKey(
            call_id=request.call_id,
            remote_tag=request.from_tag,
            local_tag=self._new_tag(),
            event_id=request.event_id,
        )
        sub = Subscription(
            key=key,
            extension=request.extension,
            entity_uri=request.entity_uri,
            local_uri=request.to_uri,
            remote_uri=request.from_uri,
            remote_target=request.contact,
            route_set=request.record_route,
            expires_at=now + expires,
            remote_cseq=request.cseq,
        )
        return self._accepted(sub, expires, now)

    def _refresh(self, request: SubscribeRequest, expires: int, now: float) -> SubscribeOutcome:
        assert request.to_tag is not None
        key = SubscriptionKey(
            call_id=request.call_id,
            remote_tag=request.from_tag,
            local_tag=request.to_tag,
            event_id=request.event_id,
        )
        live = self._subs.get(key)
        if live is None or live.sub.expires_at <= now:
            # RFC 6665 section 4.2.1.2: a refresh of an unknown or expired subscription.
            return _refuse(481, "Subscription Does Not Exist")
        sub = live.sub
        if request.cseq <= sub.remote_cseq:
            # RFC 3261 section 12.2.2: an out-of-order request within a dialog.
            return _refuse(500, "Server Internal Error: CSeq out of order")
        # RFC 3261 section 12.2.1.2: a target refresh may move the remote target.
        sub = replace(
            sub,
            remote_cseq=request.cseq,
            remote_target=request.contact or sub.remote_target,
            expires_at=now + expires,
        )
        return self._accepted(sub, expires, now)

    def _accepted(self, sub: Subscription, expires: int, now: float) -> SubscribeOutcome:
        live = self._subs.get(sub.key) or _Live(sub)  # a refresh keeps counting
        live.sub = sub
        if expires == 0:
            self._remove(sub.key)
            notify = self._notify(live, "terminated;reason=timeout", now)
        else:
            self._put(live)
            notify = self._notify(live, None, now)
        return SubscribeOutcome(
            status=200,
            reason="OK",
            local_tag=sub.key.local_tag,
            expires=expires,
            headers=(("Expires", str(expires)),),
            notify=notify,
        )

    # --- NOTIFY fan-out and termination ----------------------------------------------

    def _document(self, extension: str, entity_uri: str) -> Document:
        """``extension``'s current document for ``entity_uri`` (rendered on first use
        after a state change)."""
        rendered = self._documents.setdefault(extension, {})
        doc = rendered.get(entity_uri)
        if doc is None:
            doc = document(entity_uri, "full", list(self._dialogs.get(extension, ())))
            rendered[entity_uri] = doc
        return doc

    def _notify(self, live: _Live, terminated: str | None, now: float) -> NotifyToSend:
        """The next NOTIFY of ``live``, counted."""
        sub = live.sub
        if terminated is None:
            # RFC 6665 section 4.2.2: expires is what is left, never more than granted.
            remaining = max(0, math.ceil(sub.expires_at - now))
            state = f"active;expires={remaining}"
        else:
            state = terminated
        version = live.notified
        live.notified = version + 1
        return NotifyToSend(
            subscription=sub,
            cseq=version + 1,
            subscription_state=state,
            version=version,
            body=self._document(sub.extension, sub.entity_uri).with_version(version),
        )

    def state_changed(
        self, extension: str, dialogs: Iterable[Dialog], now: float
    ) -> list[NotifyToSend]:
        """Record ``extension``'s dialogs and notify every live subscription to it.

        Dialogs equal to those already shown notify nobody: a read-model value can
        change where the lamp does not (its version and clock, a call-state change
        applied twice), and a NOTIFY reports a change of state (RFC 6665 section
        4.2.2). Subscriptions already past their expiry are left to :meth:`expire`.
        Dialogs that cannot be rendered raise :class:`DialogInfoError` and change
        nothing.
        """
        shown = list(dialogs)
        check(shown)
        if self._dialogs.get(extension) == tuple(shown):
            return []
        self._dialogs[extension] = tuple(shown)
        self._documents.pop(extension, None)
        return [
            self._notify(live, None, now)
            for live in self._by_ext.get(extension, {}).values()
            if live.sub.expires_at > now
        ]

    def expire(self, now: float) -> list[NotifyToSend]:
        """End the subscriptions that were not refreshed in time (RFC 6665 section 4.2.2)."""
        ended = [live for live in self._subs.values() if live.sub.expires_at <= now]
        return [self._terminate(live, "timeout", now) for live in ended]

    def set_extensions(self, extensions: Iterable[str], now: float) -> list[NotifyToSend]:
        """Replace the watchable extensions; subscriptions to removed ones end with
        ``noresource`` (RFC 6665 section 4.1.3)."""
        self.extensions = frozenset(extensions)
        removed = [
            live for live in self._subs.values() if live.sub.extension not in self.extensions
        ]
        return [self._terminate(live, "noresource", now) for live in removed]

    def terminate_all(
        self, now: float, reason: TerminationReason = "deactivated"
    ) -> list[NotifyToSend]:
        """End every subscription, e.g. with ``deactivated`` when this edge shuts down."""
        return [self._terminate(live, reason, now) for live in list(self._subs.values())]

    def drop(self, key: SubscriptionKey) -> None:
        """Forget ``key`` without a NOTIFY: its NOTIFY was answered 481 or timed out
        (RFC 6665 section 4.2.2)."""
        self._remove(key)

    def _terminate(self, live: _Live, reason: TerminationReason, now: float) -> NotifyToSend:
        self._remove(live.sub.key)
        return self._notify(live, f"terminated;reason={reason}", now)
