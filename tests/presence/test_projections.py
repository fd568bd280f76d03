"""The presence read models as pure folds: desks, users, history, desk status, BLF."""

from __future__ import annotations

import msgspec

from hotdesk_contracts.events import LedgerEvent, LogoutReason
from hotdesk_contracts.messages import CallPhase, CallStateChanged
from hotdesk_ledger.projection import fold
from hotdesk_presence.projections import (
    BlfStates,
    DeskSeats,
    DeskStatusFold,
    History,
    UserDirectory,
    bus_fold,
)
from hotdesk_presence.projections.desks import BusEvent
from tests.presence.factories import (
    at,
    call_state,
    locked_out,
    lockout_cleared,
    logged_in,
    logged_out,
    pin_rejected,
    registration,
    reprovision,
    roamed,
)


def test_a_login_seats_the_user_and_a_logout_frees_the_desk_with_reason_and_actor() -> None:
    events: list[LedgerEvent] = [logged_in("HD0001", "100", 1), logged_in("HD0002", "101", 2)]
    model = fold(DeskSeats(), enumerate(events, 1))
    assert model["HD0001"].user == "100"
    assert model["HD0001"].state == "logged_in"
    assert model["HD0001"].since == at(1)
    events.append(logged_out("HD0001", "100", 5, LogoutReason.ADMIN, "admin:alice"))
    model = fold(DeskSeats(), enumerate(events, 1))
    assert model["HD0001"].state == "idle"
    assert model["HD0001"].user is None
    assert model["HD0001"].since == at(5)
    assert (model["HD0001"].last_reason, model["HD0001"].last_actor) == ("admin", "admin:alice")
    assert model["HD0002"].user == "101"


def test_a_roam_hands_the_desk_to_the_new_user() -> None:
    model = fold(
        DeskSeats(), enumerate([logged_in("HD0001", "100"), roamed("HD0001", "100", "101", 3)], 1)
    )
    assert model["HD0001"].user == "101"
    assert model["HD0001"].since == at(3)


def test_users_follow_their_desk_and_are_unbound_on_logout_or_roam() -> None:
    events: list[LedgerEvent] = [logged_in("HD0001", "100", 0), roamed("HD0001", "100", "101", 1)]
    model = fold(UserDirectory(), enumerate(events, 1))
    assert model["100"].desk is None
    assert model["101"].desk == "HD0001"
    events.append(logged_out("HD0001", "101", 2))
    assert fold(UserDirectory(), enumerate(events, 1))["101"].desk is None


def test_an_old_seat_left_elsewhere_does_not_unbind_the_users_new_desk() -> None:
    events: list[LedgerEvent] = [
        logged_in("HD0001", "100", 0),
        logged_in("HD0002", "100", 1),
        logged_out("HD0001", "100", 1, LogoutReason.ELSEWHERE),
    ]
    assert fold(UserDirectory(), enumerate(events, 1))["100"].desk == "HD0002"


def test_lockout_is_recorded_with_until_and_cleared_by_an_admin() -> None:
    events: list[LedgerEvent] = [
        pin_rejected("100", 1),
        pin_rejected("100", 2),
        locked_out("100", 15, 1),
    ]
    user = fold(UserDirectory(), enumerate(events, 1))["100"]
    assert user.failures == 2
    assert user.locked_until == at(15)
    assert user.locked(at(10))
    assert not user.locked(at(16))
    events.append(lockout_cleared("100", 2))
    user = fold(UserDirectory(), enumerate(events, 1))["100"]
    assert user.locked_until is None
    assert not user.locked(at(3))


def test_history_keeps_every_event_per_desk_and_per_user_with_reason_and_actor() -> None:
    events: list[LedgerEvent] = [
        logged_in("HD0001", "100", 0),
        roamed("HD0001", "100", "101", 1),
        logged_out("HD0001", "101", 2, LogoutReason.ADMIN, "admin:alice"),
        pin_rejected("100", 1, 3),
    ]
    model = fold(History(), enumerate(events, 1))
    assert [e.type for e in model["desk.HD0001"].entries] == [
        "LoggedIn",
        "Roamed",
        "LoggedOut",
        "PinRejected",
    ]
    assert [e.type for e in model["user.100"].entries] == ["LoggedIn", "Roamed", "PinRejected"]
    assert [e.type for e in model["user.101"].entries] == ["Roamed", "LoggedOut"]
    last = model["desk.HD0001"].entries[2]
    assert (last.reason, last.actor, last.seq) == ("admin", "admin:alice", 3)


def test_history_is_capped_per_key_keeping_the_newest() -> None:
    events: list[LedgerEvent] = [logged_in("HD0001", str(100 + i % 2), i) for i in range(30)]
    entries = fold(History(cap=10), enumerate(events, 1))["desk.HD0001"].entries
    assert len(entries) == 10
    assert [e.seq for e in entries] == list(range(21, 31))


def test_desk_status_tracks_registration_and_reprovision_outcomes() -> None:
    events: list[BusEvent] = [
        registration("HD0001", "registered", 0),
        registration("HD0001", "refreshed", 5),
        registration("100", "registered", 5),
        reprovision("HD0001", ok=False, minutes=6),
    ]
    model = bus_fold(DeskStatusFold(), list(enumerate(events, 1)))
    assert set(model) == {"HD0001"}
    status = model["HD0001"]
    assert status.online
    assert status.online_since == at(0)
    assert (status.reprovision, status.reprovision_stage) == ("failed", "fetch")
    events += [registration("HD0001", "expired", 9), reprovision("HD0001", ok=True, minutes=9)]
    status = bus_fold(DeskStatusFold(), list(enumerate(events, 1)))["HD0001"]
    assert not status.online
    assert status.online_since is None
    assert status.reprovision == "confirmed"


def test_desk_stays_online_while_a_contact_remains_whatever_the_kind() -> None:
    second = "sip:HD0001@127.0.0.1:5064"
    both = ["sip:HD0001@127.0.0.1:5062", second]
    events: list[BusEvent] = [
        msgspec.structs.replace(registration("HD0001", "registered", 0), contacts=both),
        # One of two contacts expired or was removed: the other still rings.
        msgspec.structs.replace(registration("HD0001", "expired", 3), contacts=[second]),
        msgspec.structs.replace(registration("HD0001", "unregistered", 4), contacts=[second]),
    ]
    status = bus_fold(DeskStatusFold(), list(enumerate(events, 1)))["HD0001"]
    assert status.online
    assert status.online_since == at(0)
    # The last contact gone, by any kind of change, takes the desk offline.
    for kind in ("expired", "unregistered", "refreshed"):
        last = msgspec.structs.replace(registration("HD0001", kind, 9), contacts=[])
        gone = bus_fold(DeskStatusFold(), list(enumerate([*events, last], 1)))["HD0001"]
        assert (kind, gone.online, gone.online_since) == (kind, False, None)


def test_blf_goes_early_confirmed_terminated_with_increasing_versions_for_both_sides() -> None:
    phases = [CallPhase.TRYING, CallPhase.RINGING, CallPhase.ANSWERED, CallPhase.ENDED]
    seen: list[tuple[str, int]] = []
    events: list[tuple[int, CallStateChanged]] = []
    for i, phase in enumerate(phases):
        events.append((i + 1, call_state("c1", phase, "101", "100")))
        model = bus_fold(BlfStates(), events)
        seen.append((model["100"].state, model["100"].version))
    assert [s for s, _ in seen] == ["early", "early", "confirmed", "terminated"]
    assert [v for _, v in seen] == [1, 2, 3, 4]
    callee, caller = model["100"], model["101"]
    assert (callee.direction, caller.direction) == ("recipient", "initiator")
    assert callee.call_id == "c1"
    assert (callee.local_tag, callee.remote_tag) == ("c1-to", "c1-from")
    assert (caller.local_tag, caller.remote_tag) == ("c1-from", "c1-to")
    assert callee.active == []


def test_blf_shows_the_call_still_up_when_a_second_one_ends() -> None:
    events: list[CallStateChanged] = [
        call_state("a", CallPhase.ANSWERED, "101", "100"),
        call_state("b", CallPhase.RINGING, "102", "100"),
        call_state("b", CallPhase.ENDED, "102", "100"),
    ]
    lamp = bus_fold(BlfStates(), list(enumerate(events, 1)))["100"]
    assert (lamp.state, lamp.call_id, lamp.version) == ("confirmed", "a", 3)
