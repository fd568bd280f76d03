"""``hotdesk run presence``'s ``/metrics`` after hot-desking through the ledger: logins
and logouts by reason, wrong PINs and a lockout, each counted once, when the history
projection applies them; while that projection is held back its lag shows it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from hotdesk_contracts import streams
from hotdesk_contracts.commands import LogIn, LogOut, RecordPinFailure
from hotdesk_contracts.directory import Config, HttpSettings, NatsSettings, Policies
from hotdesk_contracts.events import (
    Cause,
    LedgerEvent,
    LoggedIn,
    LoggedOut,
    LogoutReason,
    PinLockedOut,
    PinLockoutCleared,
    PinRejected,
    Roamed,
)
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from hotdesk_presence.metrics import LedgerCounters
from tests.runtime.test_metrics import observed
from tests.support.natslink import NatsLink
from tests.support.natsserver import NatsServer, free_port
from tests.support.service_process import ServiceProcess, hotdesk_run, sample

LEDGER = streams.LEDGER.name


def cause() -> dict[str, Any]:
    """The fields every command carries."""
    cid = uuid.uuid4().hex
    return {
        "command_id": cid,
        "at": datetime.now(UTC),
        "cause": Cause(actor="test"),
        "correlation_id": cid,
    }


async def scraped(
    service: ServiceProcess, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float | None]:
    """The samples ``expected`` names, once they all have the expected values (the lag
    is polled every few seconds), or as they are when waiting ran out."""
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float | None] = {}
    for _ in range(300):
        samples = await service.metrics()
        seen = {key: sample(samples, key[0], **dict(key[1])) for key in expected}
        if seen == expected:
            break
        await asyncio.sleep(0.1)
    return seen


def lag(projection: str, value: float) -> tuple[tuple[str, tuple[tuple[str, str], ...]], float]:
    return ("hotdesk_projection_lag", (("projection", projection), ("stream", LEDGER))), value


async def test_ledger_facts_are_counted_when_the_history_projection_applies_them(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    link = await NatsLink(own_nats_server.port).start()
    nc = await nats.connect(own_nats_server.url)
    try:
        config = Config(
            nats=NatsSettings(url=link.url),
            admin=HttpSettings(listen="127.0.0.1", port=free_port()),
        )
        async with hotdesk_run("presence", config, tmp_path) as presence:
            await presence.until_ready()
            # The history projection's pulls wait in the link from now on.
            link.hold(f"MSG.NEXT.{LEDGER}.projection-presence-history".encode())
            await asyncio.wait_for(link.held.wait(), 60)

            ledger = Ledger(EventStore(nc.jetstream()), Policies())
            appended: list[LedgerEvent] = []
            commands: list[LogIn | LogOut | RecordPinFailure] = [
                LogIn(**cause(), desk="HD0001", user="100"),
                LogIn(**cause(), desk="HD0002", user="101"),
                # 101 takes HD0001 over from 100, and leaves HD0002 (exclusive seats).
                LogIn(**cause(), desk="HD0001", user="101", seen_user="100"),
                LogOut(**cause(), desk="HD0001", reason=LogoutReason.ADMIN),
                *[RecordPinFailure(**cause(), user="102", desk="HD0003") for _ in range(5)],
            ]
            for cmd in commands:
                appended += await ledger.execute(cmd)
            assert [type(e) for e in appended] == [
                LoggedIn,
                LoggedIn,
                Roamed,
                LoggedOut,
                LoggedOut,
                *[PinRejected] * 5,
                PinLockedOut,
            ]
            assert [e.reason for e in appended if isinstance(e, LoggedOut)] == [
                LogoutReason.ELSEWHERE,
                LogoutReason.ADMIN,
            ]

            held = dict(
                [
                    lag("presence-history", len(appended)),
                    lag("presence-desks", 0),
                    lag("presence-users", 0),
                    (("hotdesk_logins_total", (("kind", "login"),)), 0),
                    (("hotdesk_pin_failures_total", ()), 0),
                ]
            )
            assert await scraped(presence, held) == held

            link.release()
            applied = dict(
                [
                    lag("presence-history", 0),
                    (("hotdesk_logins_total", (("kind", "login"),)), 2),
                    (("hotdesk_logins_total", (("kind", "roam"),)), 1),
                    (("hotdesk_logouts_total", (("reason", "roamed"),)), 1),
                    (("hotdesk_logouts_total", (("reason", "elsewhere"),)), 1),
                    (("hotdesk_logouts_total", (("reason", "admin"),)), 1),
                    (("hotdesk_logouts_total", (("reason", "user_key"),)), 0),
                    (("hotdesk_logouts_total", (("reason", "auto_idle"),)), 0),
                    (("hotdesk_pin_failures_total", ()), 5),
                    (("hotdesk_pin_lockouts_total", ()), 1),
                    (("hotdesk_pin_lockouts_cleared_total", ()), 0),
                ]
            )
            assert await scraped(presence, applied) == applied
            # Every login was undone: as many logouts as logins.
            samples = await presence.metrics()
            logins = sum(v for (n, _), v in samples.items() if n == "hotdesk_logins_total")
            logouts = sum(v for (n, _), v in samples.items() if n == "hotdesk_logouts_total")
            assert logins == logouts == 3
    finally:
        await nc.close()
        await link.close()


def test_a_batch_is_counted_by_kind_and_reason() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    counters = LedgerCounters(provider.get_meter("test"))
    fields: dict[str, Any] = {
        "at": datetime.now(UTC),
        "cause": Cause(actor="test"),
        "correlation_id": "c",
    }
    counters.count(
        [
            LoggedIn(event_id="1", desk="HD0001", user="100", **fields),
            Roamed(event_id="2", desk="HD0001", from_user="100", user="101", **fields),
            LoggedOut(
                event_id="3", desk="HD0001", user="101", reason=LogoutReason.AUTO_IDLE, **fields
            ),
            LoggedOut(
                event_id="4", desk="HD0002", user="102", reason=LogoutReason.AUTO_IDLE, **fields
            ),
            PinRejected(event_id="5", user="103", desk="HD0003", failures=1, **fields),
            PinLockedOut(event_id="6", user="103", desk="HD0003", until=fields["at"], **fields),
            PinLockoutCleared(event_id="7", user="103", **fields),
        ]
    )
    assert observed(reader, "hotdesk_logins") == {
        frozenset({("kind", "login")}): 1,
        frozenset({("kind", "roam")}): 1,
    }
    logouts = observed(reader, "hotdesk_logouts")
    assert logouts[frozenset({("reason", "auto_idle")})] == 2
    assert logouts[frozenset({("reason", "roamed")})] == 1
    assert sum(logouts.values()) == 3  # every other reason is there, at 0
    assert len(logouts) == len(LogoutReason) + 1
    for name in ("hotdesk_pin_failures", "hotdesk_pin_lockouts", "hotdesk_pin_lockouts_cleared"):
        assert observed(reader, name) == {frozenset(): 1}
    provider.shutdown()
