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
    """One live subscription: its dialog and its NOTIFY counters."""

    key: SubscriptionKey
    extension: str
    entity_uri: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...]
    expires_at: float
    remote_cseq: int
    local_cseq: int = 0
    """CSeq of the last NOTIFY sent (RFC 3261 section 12.2.1.1: increases per request)."""
    version: int = 0
    """The ``version`` the next NOTIFY body carries."""

    def notified(self) -> Subscription:
        """This subscription after one more NOTIFY: CSeq and version one higher.

        Built field by field: ``dataclasses.replace`` costs several times as much,
        and a fan-out makes one of these per subscriber.
        """
        return Subscription(
            key=self.key,
            extension=self.extension,
            entity_uri=self.entity_uri,
            local_uri=self.local_uri,
            remote_uri=self.remote_uri,
            remote_target=self.remote_target,
            route_set=self.route_set,
            expires_at=self.expires_at,
            remote_cseq=self.remote_cseq,
            local_cseq=self.local_cseq + 1,
            version=self.version + 1,
        )


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
        self._subs: dict[SubscriptionKey, Subscription] = {}
        # Per-extension index: a call's state change reaches its watchers without a
        # scan of every subscription on the edge.
        self._by_ext: dict[str, dict[SubscriptionKey, None]] = {}
        self._dialogs: dict[str, tuple[Dialog, ...]] = {}
        # Each extension's current document per entity URI, rendered once per state
        # change: the fan-out then only writes every subscription's own version into it.
        self._documents: dict[str, dict[str, Document]] = {}

    def _put(self, sub: Subscription) -> None:
        self._subs[sub.key] = sub
        self._by_ext.setdefault(sub.extension, {})[sub.key] = None

    def _remove(self, key: SubscriptionKey) -> None:
        sub = self._subs.pop(key, None)
        if sub is None:
            return
        keys = self._by_ext[sub.extension]
        del keys[key]
        if not keys:
            del self._by_ext[sub.extension]

    # --- queries -------------------------------------------------------------------

    def get(self, key: SubscriptionKey) -> Subscription | None:
        """The live subscription ``key``, if any."""
        return self._subs.get(key)

    def watching(self, extension: str) -> list[Subscription]:
        """Every live subscription to ``extension``."""
        return [self._subs[key] for key in self._by_ext.get(extension, {})]

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
        sub = self._subs.get(key)
        if sub is None or sub.expires_at <= now:
            # RFC 6665 section 4.2.1.2: a refresh of an unknown or expired subscription.
            return _refuse(481, "Subscription Does Not Exist")
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
        if expires == 0:
            self._remove(sub.key)
            notify = self._notify(sub, "terminated;reason=timeout", now)
        else:
            notify = self._notify(sub, None, now)
            self._put(notify.subscription)
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

    def _notify(self, sub: Subscription, terminated: str | None, now: float) -> NotifyToSend:
        """The next NOTIFY of ``sub``; its counters advance in the returned copy."""
        if terminated is None:
            # RFC 6665 section 4.2.2: expires is what is left, never more than granted.
            remaining = max(0, math.ceil(sub.expires_at - now))
            state = f"active;expires={remaining}"
        else:
            state = terminated
        body = self._document(sub.extension, sub.entity_uri).with_version(sub.version)
        sent = sub.notified()
        return NotifyToSend(
            subscription=sent,
            cseq=sent.local_cseq,
            subscription_state=state,
            version=sub.version,
            body=body,
        )

    def state_changed(
        self, extension: str, dialogs: Iterable[Dialog], now: float
    ) -> list[NotifyToSend]:
        """Record ``extension``'s dialogs and notify every live subscription to it.

        Subscriptions already past their expiry are left to :meth:`expire`. Dialogs that
        cannot be rendered raise :class:`DialogInfoError` and change nothing.
        """
        shown = list(dialogs)
        check(shown)
        self._dialogs[extension] = tuple(shown)
        self._documents.pop(extension, None)
        out: list[NotifyToSend] = []
        subs = self._subs
        for key in self._by_ext.get(extension, ()):
            sub = subs[key]
            if sub.expires_at > now:
                notify = self._notify(sub, None, now)
                subs[key] = notify.subscription  # already in the extension's index
                out.append(notify)
        return out

    def expire(self, now: float) -> list[NotifyToSend]:
        """End the subscriptions that were not refreshed in time (RFC 6665 section 4.2.2)."""
        ended = [s for s in self._subs.values() if s.expires_at <= now]
        return [self._terminate(s, "timeout", now) for s in ended]

    def set_extensions(self, extensions: Iterable[str], now: float) -> list[NotifyToSend]:
        """Replace the watchable extensions; subscriptions to removed ones end with
        ``noresource`` (RFC 6665 section 4.1.3)."""
        self.extensions = frozenset(extensions)
        removed = [s for s in self._subs.values() if s.extension not in self.extensions]
        return [self._terminate(s, "noresource", now) for s in removed]

    def terminate_all(
        self, now: float, reason: TerminationReason = "deactivated"
    ) -> list[NotifyToSend]:
        """End every subscription, e.g. with ``deactivated`` when this edge shuts down."""
        return [self._terminate(s, reason, now) for s in list(self._subs.values())]

    def drop(self, key: SubscriptionKey) -> None:
        """Forget ``key`` without a NOTIFY: its NOTIFY was answered 481 or timed out
        (RFC 6665 section 4.2.2)."""
        self._remove(key)

    def _terminate(self, sub: Subscription, reason: TerminationReason, now: float) -> NotifyToSend:
        self._remove(sub.key)
        return self._notify(sub, f"terminated;reason={reason}", now)
