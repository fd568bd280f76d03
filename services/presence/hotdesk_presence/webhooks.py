"""Webhooks: every ledger event POSTed as JSON to the URLs in ``directory.webhooks``.

Signing and backoff are pure; :class:`WebhookDispatcher` is the adapter. The signature
is ``X-Hotdesk-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
the timestamp sent in ``X-Hotdesk-Timestamp``, so a receiver can reject replays of an old
body (the scheme Stripe and GitHub receivers already know). One durable consumer is
shared by every presence replica, so each event is delivered by one of them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import msgspec
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js import api as js_api

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event, encode_event
from hotdesk_contracts.directory import Directory, Webhook
from hotdesk_contracts.events import LedgerEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hotdesk-Signature"
TIMESTAMP_HEADER = "X-Hotdesk-Timestamp"
EVENT_HEADER = "X-Hotdesk-Event"
DURABLE = "presence-webhooks"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is right for ``body`` and ``timestamp`` (constant time)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling from ``base``."""
    return float(min(cap, base * 2 ** (attempt - 1)))


def wants(hook: Webhook, event: LedgerEvent) -> bool:
    """Whether ``hook`` subscribes to the event's type (no filter: every event)."""
    return not hook.events or type(event).__name__ in hook.events


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to deliver one event to one webhook."""

    webhook: str
    event_id: str
    event_type: str
    attempt: int
    at: datetime
    status: int
    """HTTP status, 0 when the request failed before an answer."""
    ok: bool
    error: str = ""


class DeliveryLog:
    """The most recent delivery attempts, newest last (bounded, in memory)."""

    def __init__(self, size: int = 500) -> None:
        self._entries: collections.deque[Delivery] = collections.deque(maxlen=size)

    def add(self, delivery: Delivery) -> None:
        """Record an attempt."""
        self._entries.append(delivery)

    def entries(self, webhook: str | None = None) -> list[Delivery]:
        """Attempts, optionally of one webhook."""
        return [d for d in self._entries if webhook is None or d.webhook == webhook]


class WebhookDispatcher:
    """Delivers ledger events to the configured webhooks, with retries."""

    def __init__(
        self,
        js: JetStreamContext,
        directory: Callable[[], Directory],
        log_: DeliveryLog,
        *,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.js = js
        self.directory = directory
        self.log = log_
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.timeout = timeout
        self.clock = clock

    async def deliver(self, client: httpx.AsyncClient, hook: Webhook, event: LedgerEvent) -> bool:
        """POST ``event`` to ``hook`` until it answers 2xx or the attempts run out."""
        body = encode_event(event)
        for attempt in range(1, self.max_attempts + 1):
            stamp = str(int(self.clock().timestamp()))
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(hook.secret, stamp, body),
                TIMESTAMP_HEADER: stamp,
                EVENT_HEADER: type(event).__name__,
            }
            status, error = 0, ""
            try:
                response = await client.post(hook.url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            ok = 200 <= status < 300
            self.log.add(
                Delivery(
                    webhook=hook.name,
                    event_id=event.event_id,
                    event_type=type(event).__name__,
                    attempt=attempt,
                    at=self.clock(),
                    status=status,
                    ok=ok,
                    error=error,
                )
            )
            if ok:
                return True
            log.warning(
                "webhook delivery failed",
                extra={"webhook": hook.name, "status": status, "attempt": attempt},
            )
            if attempt < self.max_attempts:
                await asyncio.sleep(backoff(attempt, self.backoff_base))
        return False

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver every ledger event from the durable consumer until ``stopping``."""
        sub = await self.js.pull_subscribe(
            subjects.LEDGER_ALL,
            durable=DURABLE,
            stream=streams.LEDGER.name,
            config=js_api.ConsumerConfig(
                ack_policy=js_api.AckPolicy.EXPLICIT,
                # New hooks are not flooded with the past: delivery starts from now.
                deliver_policy=js_api.DeliverPolicy.NEW,
                ack_wait=self.max_attempts * 60.0,
            ),
        )
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while not stopping.is_set():
                try:
                    msgs = await sub.fetch(16, timeout=1.0)
                except (TimeoutError, NatsTimeout):
                    continue
                for msg in msgs:
                    try:
                        event = decode_event(msg.data)
                    except EventDecodeError:
                        await msg.ack()
                        continue
                    hooks = [h for h in self.directory().webhooks if wants(h, event)]
                    await asyncio.gather(*(self.deliver(client, h, event) for h in hooks))
                    with contextlib.suppress(Exception):
                        await msg.ack()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
