"""The presence benchmark's ledger: realistic seating histories, written exactly."""

from __future__ import annotations

import itertools

from nats.aio.client import Client
from nats.js import JetStreamContext

from bench.presence.ledger_fill import fill, seating_events
from hotdesk_contracts.events import LoggedIn, LoggedOut, LogoutReason, Roamed
from hotdesk_ledger.projection import ProjectionRunner, fold
from hotdesk_presence.projections import DeskSeats, UserDirectory
from hotdesk_runtime.nats import ensure_jetstream


def test_seating_events_respect_the_exclusive_policy() -> None:
    seat: dict[str, str] = {}
    desk_of: dict[str, str] = {}
    kinds: set[str] = set()
    for event in itertools.islice(seating_events(desks=20, users=30), 20_000):
        kinds.add(type(event).__name__)
        if isinstance(event, LoggedIn):
            assert event.desk not in seat, "login at a seated desk"
            assert event.user not in desk_of, "login of a user seated elsewhere"
            seat[event.desk], desk_of[event.user] = event.user, event.desk
        elif isinstance(event, Roamed):
            assert seat.get(event.desk) == event.from_user
            assert event.user not in desk_of
            del desk_of[event.from_user]
            seat[event.desk], desk_of[event.user] = event.user, event.desk
        else:
            assert isinstance(event, LoggedOut)
            assert seat.pop(event.desk) == event.user
            del desk_of[event.user]
    assert kinds == {"LoggedIn", "LoggedOut", "Roamed"}


def test_seating_events_are_reproducible_and_log_out_elsewhere_first() -> None:
    first = list(itertools.islice(seating_events(desks=5, users=8, seed=3), 2000))
    again = list(itertools.islice(seating_events(desks=5, users=8, seed=3), 2000))
    assert first == again
    assert any(isinstance(e, LoggedOut) and e.reason is LogoutReason.ELSEWHERE for e in first)
    assert len({e.event_id for e in first}) == len(first)


async def test_fill_writes_exactly_the_events_the_projections_fold(
    nc: Client, js: JetStreamContext
) -> None:
    await ensure_jetstream(js)
    figures = await fill(nc, js, total=3000, desks=40, users=90)
    assert figures["events"] == 3000
    expected = list(itertools.islice(seating_events(desks=40, users=90), 3000))
    desks = ProjectionRunner(js, DeskSeats(), batch_size=500)
    assert await desks.rebuild() == 3000
    assert await desks.items() == fold(DeskSeats(), enumerate(expected, start=1))
    await desks.stop()
    users = ProjectionRunner(js, UserDirectory(), batch_size=500)
    assert await users.rebuild() == 3000
    assert await users.items() == fold(UserDirectory(), enumerate(expected, start=1))
    await users.stop()
