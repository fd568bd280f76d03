"""Presence's start-up catch-up rides out NATS errors (a stream electing its leader
under a replica that is starting) instead of ending the service."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import nats.errors
import pytest

from hotdesk_ledger.pull import PullConnectionError
from hotdesk_presence.main import caught_up


@dataclass
class Fold:
    name: str


@dataclass
class FlakyRunner:
    """A runner whose catch-up fails with ``errors`` first, then succeeds."""

    fold: Fold
    errors: list[BaseException] = field(default_factory=list)
    calls: int = 0

    async def catch_up(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return 0


async def test_a_catch_up_that_meets_nats_errors_starts_again_and_reports_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = FlakyRunner(
        Fold("presence-desk-status"),
        [nats.errors.TimeoutError(), PullConnectionError("server closed the connection")],
    )
    steady = FlakyRunner(Fold("presence-blf"))
    ready: list[str] = []
    with caplog.at_level(logging.WARNING):
        await caught_up([flaky, steady], lambda r: ready.append(r.fold.name), pause=0.01)
    assert (flaky.calls, steady.calls) == (3, 1)
    assert ready == ["presence-desk-status", "presence-blf"]
    paused = [r for r in caplog.records if r.getMessage().startswith("projection catch-up paused")]
    assert [getattr(r, "projection", None) for r in paused] == ["presence-desk-status"] * 2


async def test_a_stopping_service_does_not_keep_trying() -> None:
    stopping = asyncio.Event()
    stopping.set()
    runner = FlakyRunner(Fold("presence-blf"), [nats.errors.TimeoutError()])
    with pytest.raises(nats.errors.TimeoutError):
        await caught_up([runner], stopping=stopping, pause=0.01)


async def test_an_error_of_the_projection_itself_is_not_retried() -> None:
    runner = FlakyRunner(Fold("presence-blf"), [ValueError("a bug, not the network")])
    with pytest.raises(ValueError, match="a bug"):
        await caught_up([runner], pause=0.01)
    assert runner.calls == 1
