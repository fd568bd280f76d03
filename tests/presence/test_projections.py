"""The presence read models as pure folds: desks, users, history, desk status, BLF."""

from __future__ import annotations

import msgspec

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LedgerEvent, LogoutReason
from hotdesk_contracts.messages import CallPhase, CallStateChanged, RegistrationChanged
from hotdesk_ledger.projection import fold
from hotdesk_presence.projections import (
    BlfState,
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


def on_bus(events: list[BusEvent]) -> list[tuple[int, str, BusEvent]]:
    """The stream messages the events are published as (sequence, subject, event)."""
    out: list[tuple[int, str, BusEvent]] = []
    for seq, event in enumerate(events, 1):
        if isinstance(event, RegistrationChanged):
            subject = subjects.edge_registration(event.aor, event.kind)
        else:
            subject = subjects.provisioning_event(event.desk)
        out.append((seq, subject, event))
    return out


def as_edge_publishes(events: list[CallStateChanged]) -> list[tuple[int, str, CallStateChanged]]:
    """The stream messages the edge publishes for ``events``: each event once per party
    on that party's call-state subject (once for a call to oneself)."""
    out: list[tuple[int, str, CallStateChanged]] = []
    for event in events:
        for party in dict.fromkeys((event.caller, event.callee)):
            out.append((len(out) + 1, subjects.edge_call_state(party), event))
    return out


def test_desk_status_tracks_registration_and_reprovision_outcomes() -> None:
    events: list[BusEvent] = [
        registration("HD0001", "registered", 0),
        registration("HD0001", "refreshed", 5),
        registration("100", "registered", 5),
        reprovision("HD0001", ok=False, minutes=6),
    ]
    model = bus_fold(DeskStatusFold(), on_bus(events))
    assert set(model) == {"HD0001"}
    status = model["HD0001"]
    assert status.online
    assert status.online_since == at(0)
    assert (status.reprovision, status.reprovision_stage) == ("failed", "fetch")
    events += [registration("HD0001", "expired", 9), reprovision("HD0001", ok=True, minutes=9)]
    status = bus_fold(DeskStatusFold(), on_bus(events))["HD0001"]
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
    status = bus_fold(DeskStatusFold(), on_bus(events))["HD0001"]
    assert status.online
    assert status.online_since == at(0)
    # The last contact gone, by any kind of change, takes the desk offline.
    for kind in ("expired", "unregistered", "refreshed"):
        last = msgspec.structs.replace(registration("HD0001", kind, 9), contacts=[])
        gone = bus_fold(DeskStatusFold(), on_bus([*events, last]))["HD0001"]
        assert (kind, gone.online, gone.online_since) == (kind, False, None)


def test_blf_steps_each_side_once_per_phase_the_callee_from_its_ringing() -> None:
    phases = [CallPhase.TRYING, CallPhase.RINGING, CallPhase.ANSWERED, CallPhase.ENDED]
    seen: list[tuple[str, int, str, int]] = []
    events: list[CallStateChanged] = []
    for phase in phases:
        events.append(call_state("c1", phase, "101", "100"))
        model = bus_fold(BlfStates(), as_edge_publishes(events))
        callee = model.get("100", BlfState(ext="100"))
        caller = model["101"]
        seen.append((callee.state, callee.version, caller.state, caller.version))
    # The callee's side is a dialog from the 180 with its To-tag: trying changes nothing.
    assert seen == [
        ("idle", 0, "early", 1),
        ("early", 1, "early", 2),
        ("confirmed", 2, "confirmed", 3),
        ("terminated", 3, "terminated", 4),
    ]
    assert (callee.direction, caller.direction) == ("recipient", "initiator")
    assert callee.call_id == "c1"
    assert (callee.local_tag, callee.remote_tag) == ("c1-to", "c1-from")
    assert (caller.local_tag, caller.remote_tag) == ("c1-from", "c1-to")
    assert callee.active == []


def test_blf_copy_of_a_call_state_changes_only_the_party_its_subject_names() -> None:
    fold = BlfStates()
    event = call_state("c1", CallPhase.RINGING, "101", "100")
    assert fold.keys(event, subjects.edge_call_state("100")) == ["100"]
    assert fold.keys(event, subjects.edge_call_state("101")) == ["101"]
    # A subject naming neither party (nor any subject at all) changes nothing.
    assert fold.keys(event, subjects.edge_call_state("102")) == []
    assert fold.keys(event, "hotdesk.edge.callstate") == []
    # A call to oneself is published once and steps its one party once.
    own = call_state("c2", CallPhase.RINGING, "100", "100")
    assert fold.keys(own, subjects.edge_call_state("100")) == ["100"]
    assert bus_fold(fold, as_edge_publishes([own]))["100"].version == 1


def test_blf_callee_side_starts_with_the_first_early_phase_that_has_a_to_tag() -> None:
    fold = BlfStates()
    on_callee = subjects.edge_call_state("100")
    trying = call_state("c1", CallPhase.TRYING, "101", "100")
    proceeding = msgspec.structs.replace(
        call_state("c1", CallPhase.RINGING, "101", "100"), to_tag=""
    )
    ringing = call_state("c1", CallPhase.RINGING, "101", "100")
    assert fold.keys(trying, on_callee) == []
    assert fold.keys(proceeding, on_callee) == []  # a 18x without a tag: no dialog yet
    assert fold.keys(ringing, on_callee) == ["100"]
    # The caller's side has its tag from the start.
    assert fold.keys(trying, subjects.edge_call_state("101")) == ["101"]
    # A call refused before any 18x with a tag still ends on the callee's side.
    refused = msgspec.structs.replace(call_state("c1", CallPhase.ENDED, "101", "100"), to_tag="")
    assert fold.keys(refused, on_callee) == ["100"]
    model = bus_fold(fold, as_edge_publishes([trying, proceeding, ringing]))
    assert (model["100"].state, model["100"].version, model["100"].local_tag) == (
        "early",
        1,
        "c1-to",
    )
    assert model["101"].version == 3


def test_blf_versions_step_once_per_phase_when_two_calls_interleave() -> None:
    # Two edges publish about two calls of 100 at once: their copies interleave.
    a = [call_state("a", p, "101", "100") for p in (CallPhase.RINGING, CallPhase.ANSWERED)]
    b = [call_state("b", p, "100", "102") for p in (CallPhase.TRYING, CallPhase.RINGING)]
    copies_a, copies_b = as_edge_publishes(a), as_edge_publishes(b)
    mixed = [m for pair in zip(copies_a, copies_b, strict=True) for m in pair]
    model = bus_fold(
        BlfStates(), [(seq, subject, e) for seq, (_, subject, e) in enumerate(mixed, 1)]
    )
    # 102's side of b starts with its ringing; 100 is a's callee and b's caller.
    assert {k: v.version for k, v in model.items()} == {"100": 4, "101": 2, "102": 1}
    lamp = model["100"]
    assert (lamp.state, lamp.call_id) == ("confirmed", "a")
    assert sorted((d.call_id, d.state, d.direction) for d in lamp.active) == [
        ("a", "confirmed", "recipient"),
        ("b", "early", "initiator"),
    ]


def test_blf_callee_shows_one_dialog_with_the_same_tags_from_early_to_confirmed() -> None:
    # The edge's ringing event carries the To-tag of the 18x, as the 2xx does.
    phases = [CallPhase.TRYING, CallPhase.RINGING, CallPhase.ANSWERED, CallPhase.ENDED]
    copies = as_edge_publishes([call_state("c1", p, "101", "100") for p in phases])
    shown = []
    for n in range(1, len(copies) + 1):
        lamp = bus_fold(BlfStates(), copies[:n]).get("100")
        if lamp is not None and lamp.state != "terminated":
            shown.append((lamp.state, lamp.call_id, lamp.local_tag, lamp.remote_tag))
    assert sorted(set(shown)) == [
        ("confirmed", "c1", "c1-to", "c1-from"),
        ("early", "c1", "c1-to", "c1-from"),
    ]


def test_blf_shows_the_call_still_up_when_a_second_one_ends() -> None:
    events: list[CallStateChanged] = [
        call_state("a", CallPhase.ANSWERED, "101", "100"),
        call_state("b", CallPhase.RINGING, "102", "100"),
        call_state("b", CallPhase.ENDED, "102", "100"),
    ]
    lamp = bus_fold(BlfStates(), as_edge_publishes(events))["100"]
    assert (lamp.state, lamp.call_id, lamp.version) == ("confirmed", "a", 3)
