"""A realistic ledger for the rebuild benchmark: logins, logouts and roams.

:func:`seating_events` is a pure, seeded simulation of a floor of desks and users under
the exclusive policy (a user sits at one desk at most: logging in elsewhere first logs
them out with reason ``elsewhere``). :func:`fill` publishes its events, encoded with
``encode_event``, to each desk's ledger subject as fast as nats-server takes them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import encode_event
from hotdesk_contracts.events import Cause, LedgerEvent, LoggedIn, LoggedOut, LogoutReason, Roamed

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
_LEAVING = (
    LogoutReason.USER_KEY,
    LogoutReason.USER_CODE,
    LogoutReason.USER_KEY,
    LogoutReason.AUTO_IDLE,
    LogoutReason.AUTO_SCHEDULE,
    LogoutReason.ADMIN,
)


def seating_events(desks: int, users: int, seed: int = 7) -> Iterator[LedgerEvent]:
    """An endless, reproducible stream of seating events over ``desks`` desks
    (``D00000`` ...) and ``users`` extensions (``10000`` ...).

    Each step picks a desk: an idle one gets a login; a seated one sees its user leave
    (60 %) or another user roam onto it (40 %). A user seated elsewhere is first
    logged out there (``elsewhere``), as the exclusive policy does.
    """
    rng = random.Random(seed)
    seat: list[str | None] = [None] * desks
    desk_of: dict[str, int] = {}
    at = T0
    n = 0

    def common(desk: int, user: str, actor: str) -> dict[str, object]:
        nonlocal n
        n += 1
        return {
            "event_id": f"ev-{n}",
            "at": at,
            "cause": Cause(actor=actor, call_id=f"call-{n}"),
            "correlation_id": f"corr-{n}",
            "desk": f"D{desk:05d}",
            "user": user,
        }

    def free(user: str, actor: str) -> Iterator[LedgerEvent]:
        elsewhere = desk_of.pop(user, None)
        if elsewhere is not None:
            seat[elsewhere] = None
            yield LoggedOut(reason=LogoutReason.ELSEWHERE, **common(elsewhere, user, actor))  # type: ignore[arg-type]

    while True:
        at += timedelta(milliseconds=rng.randrange(200, 4000))
        desk = rng.randrange(desks)
        current = seat[desk]
        if current is not None and rng.random() < 0.6:
            reason = rng.choice(_LEAVING)
            actor = "admin:alice" if reason is LogoutReason.ADMIN else f"user:{current}"
            seat[desk] = None
            del desk_of[current]
            yield LoggedOut(reason=reason, **common(desk, current, actor))  # type: ignore[arg-type]
            continue
        user = f"{10000 + rng.randrange(users)}"
        if user == current:
            continue
        yield from free(user, f"user:{user}")
        seat[desk] = user
        desk_of[user] = desk
        if current is None:
            yield LoggedIn(**common(desk, user, f"user:{user}"))  # type: ignore[arg-type]
        else:
            del desk_of[current]
            yield Roamed(from_user=current, **common(desk, user, f"user:{user}"))  # type: ignore[arg-type]


async def stream_count(js: JetStreamContext) -> int:
    """Messages in the ledger stream."""
    info = await js.stream_info(streams.LEDGER.name)
    return int(info.state.messages)


async def fill(
    nc: Client, js: JetStreamContext, total: int, desks: int, users: int
) -> dict[str, float]:
    """Publish ``total`` seating events to an empty ledger; the fill rate and counts.

    Plain publishes, flushed every 20,000, as the ledger benchmark fills its stream: a
    busy server may drop some, so the stream is topped up with acknowledged publishes
    of the simulation's next events until it holds exactly ``total``.
    """
    events = seating_events(desks, users)
    started = time.perf_counter()
    for i in range(total):
        event = next(events)
        await nc.publish(subjects.desk_ledger(event.desk), encode_event(event))
        if i % 20_000 == 19_999:
            await nc.flush(timeout=30)
    await nc.flush(timeout=30)
    deadline = time.monotonic() + 30
    while (count := await stream_count(js)) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    topped_up = total - count
    for _ in range(topped_up):
        event = next(events)
        await js.publish(subjects.desk_ledger(event.desk), encode_event(event))
    elapsed = time.perf_counter() - started
    return {
        "events": float(await stream_count(js)),
        "fill_per_s": total / elapsed,
        "topped_up": float(topped_up),
    }
