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
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

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


DELIVERIES_STREAM = "HOTDESK_WEBHOOK_DELIVERIES"
DELIVERIES_SUBJECT = "hotdesk.presence.webhooks.delivery"


class DeliveryLog:
    """The most recent delivery attempts, bounded.

    With ``js`` the attempts go to a small JetStream stream that keeps the last
    ``size`` of them, so every presence replica lists what any replica delivered;
    without it they stay in this process's memory.
    """

    def __init__(
        self, size: int = 500, js: JetStreamContext | None = None, replicas: int = 1
    ) -> None:
        self.size = size
        self.js = js
        self.replicas = replicas
        """Copies of the log stream (``nats.replicas``: 3 on a cluster, so a lost node
        loses no delivery record)."""
        self._entries: collections.deque[Delivery] = collections.deque(maxlen=size)
        self._stream_ready = False

    async def _ensure_stream(self) -> None:
        assert self.js is not None
        if self._stream_ready:
            return
        try:
            await self.js.stream_info(DELIVERIES_STREAM)
        except NotFoundError:
            await self.js.add_stream(
                js_api.StreamConfig(
                    name=DELIVERIES_STREAM,
                    description="Recent webhook delivery attempts, for the admin API.",
                    subjects=[DELIVERIES_SUBJECT],
                    max_msgs=self.size,
                    max_age=7 * 86400.0,
                    discard=js_api.DiscardPolicy.OLD,
                    num_replicas=self.replicas,
                )
            )
        self._stream_ready = True

    async def add(self, delivery: Delivery) -> None:
        """Record an attempt (a failure to record is logged, never raised)."""
        if self.js is None:
            self._entries.append(delivery)
            return
        try:
            await self._ensure_stream()
            await self.js.publish(DELIVERIES_SUBJECT, msgspec.json.encode(delivery))
        except (NatsError, TimeoutError) as exc:
            self._stream_ready = False
            log.warning("webhook delivery not recorded", extra={"error": repr(exc)})

    async def recent(self, webhook: str | None = None) -> list[Delivery]:
        """Attempts, oldest first, optionally of one webhook."""
        if self.js is None:
            entries = list(self._entries)
        else:
            entries = await self._read()
        return [d for d in entries if webhook is None or d.webhook == webhook]

    async def _read(self) -> list[Delivery]:
        assert self.js is not None
        await self._ensure_stream()
        info = await self.js.stream_info(DELIVERIES_STREAM)
        count = int(info.state.messages)
        if count == 0:
            return []
        sub = await self.js.pull_subscribe(
            DELIVERIES_SUBJECT,
            stream=DELIVERIES_STREAM,
            config=js_api.ConsumerConfig(
                ack_policy=js_api.AckPolicy.NONE,
                deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=int(info.state.first_seq),
                inactive_threshold=30.0,
                mem_storage=True,
            ),
        )
        out: list[Delivery] = []
        try:
            while len(out) < count:
                try:
                    msgs = await sub.fetch(min(count - len(out), 256), timeout=2.0)
                except NatsTimeout:
                    break
                out.extend(msgspec.json.decode(m.data, type=Delivery) for m in msgs)
        finally:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
        return out


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
            await self.log.add(
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
