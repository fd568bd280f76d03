"""The routing decision: dial codes, the idle-desk policy and the login map."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from hotdesk_contracts.dialplan import Login, Logout
from hotdesk_contracts.directory import DialCodes, OtherCode
from hotdesk_contracts.events import Cause, LoggedIn, LoggedOut, LogoutReason, Roamed
from hotdesk_sip_edge.login_state import LoginMap
from hotdesk_sip_edge.routing import (
    IDLE_DESK_REASON,
    Refusal,
    ToAor,
    ToHotdesk,
    ToTrunk,
    caller_of,
    decide,
)
from tests.sip_edge.harness import directory

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CAUSE = Cause(actor="user:test")


def _logins(*pairs: tuple[str, str]) -> LoginMap:
    logins = LoginMap()
    for desk, user in pairs:
        logins.apply(
            LoggedIn(event_id="e", at=NOW, cause=CAUSE, correlation_id="c", desk=desk, user=user)
        )
    return logins


def test_idle_desk_may_only_call_emergency_numbers_and_hotdesk_codes() -> None:
    dirs = directory(emergency_port=7000, trunk_port=7001)
    logins = LoginMap()
    caller = caller_of("HD0001", dirs, logins)
    assert decide(caller, "5551234", dirs, logins) == Refusal(403, IDLE_DESK_REASON)
    assert decide(caller, "101", dirs, logins) == Refusal(403, IDLE_DESK_REASON)
    assert decide(caller, "112", dirs, logins) == ToTrunk(
        "sip:127.0.0.1:7000", "112", emergency=True
    )
    assert decide(caller, "*77*100*", dirs, logins) == ToHotdesk(Login("100"))
    assert decide(caller, "*77*5*", dirs, logins) == ToHotdesk(Logout())


def test_a_reloaded_directory_presents_the_callers_new_name() -> None:
    before = directory(trunk_port=7001)
    logins = _logins(("HD0001", "100"))
    assert caller_of("HD0001", before, logins).name == "Alice Example"
    renamed = [
        msgspec.structs.replace(e, name="Alice Renamed") if e.number == "100" else e
        for e in before.extensions
    ]
    after = msgspec.structs.replace(before, extensions=renamed)
    assert caller_of("HD0001", after, logins).name == "Alice Renamed"
    assert caller_of("100", after, logins).name == "Alice Renamed"


def test_emergency_without_emergency_trunk_is_503() -> None:
    dirs = directory(trunk_port=7001)
    caller = caller_of("HD0001", dirs, LoginMap())
    decision = decide(caller, "911", dirs, LoginMap())
    assert isinstance(decision, Refusal)
    assert decision.status == 503


def test_logged_in_desk_calls_as_its_user_and_reaches_the_desk_of_the_callee() -> None:
    dirs = directory(trunk_port=7001)
    logins = _logins(("HD0001", "100"), ("HD0002", "101"))
    caller = caller_of("HD0001", dirs, logins)
    assert (caller.user, caller.name, caller.desk) == ("100", "Alice Example", "HD0001")
    assert decide(caller, "101", dirs, logins) == ToAor("HD0002", "101", callee_desk="HD0002")
    assert decide(caller, "5551234", dirs, logins) == ToTrunk("sip:127.0.0.1:7001", "5551234")


def test_user_not_logged_in_anywhere_is_routed_to_their_own_registration() -> None:
    dirs = directory()
    logins = LoginMap()
    caller = caller_of("100", dirs, logins)
    assert decide(caller, "101", dirs, logins) == ToAor("101", "101")


def test_conflicting_dial_codes_are_forbidden_and_named() -> None:
    dirs = directory()
    dirs = type(dirs)(
        extensions=dirs.extensions,
        desks=dirs.desks,
        dial_codes=DialCodes(other=[OtherCode(code="*77*1", name="pickup")]),
    )
    caller = caller_of("100", dirs, LoginMap())
    decision = decide(caller, "*77*100*", dirs, LoginMap())
    assert isinstance(decision, Refusal)
    assert decision.status == 403
    assert "*77*1" in decision.log


def test_logout_and_roam_update_both_directions_of_the_map() -> None:
    logins = _logins(("HD0001", "100"))
    logins.apply(
        Roamed(
            event_id="e2",
            at=NOW,
            cause=CAUSE,
            correlation_id="c",
            desk="HD0001",
            from_user="100",
            user="101",
        )
    )
    assert logins.user_at == {"HD0001": "101"}
    assert logins.desk_of == {"101": "HD0001"}
    logins.apply(
        LoggedOut(
            event_id="e3",
            at=NOW,
            cause=CAUSE,
            correlation_id="c",
            desk="HD0001",
            user="101",
            reason=next(iter(LogoutReason)),
        )
    )
    assert logins.user_at == {}
    assert logins.desk_of == {}


def test_dialling_the_logout_key_uri_is_a_logout_for_the_ivr() -> None:
    dirs = directory(trunk_port=7001)
    idle = caller_of("HD0001", dirs, LoginMap())
    key = "sip:logoutkey@pbx.example"
    assert decide(idle, "logoutkey", dirs, LoginMap(), key) == ToHotdesk(Logout())
    logins = _logins(("HD0001", "100"))
    busy = caller_of("HD0001", dirs, logins)
    assert decide(busy, "logoutkey", dirs, logins, "logoutkey") == ToHotdesk(Logout())


def test_without_a_logout_key_uri_its_user_part_is_an_ordinary_number() -> None:
    dirs = directory(trunk_port=7001)
    idle = caller_of("HD0001", dirs, LoginMap())
    assert decide(idle, "logoutkey", dirs, LoginMap(), "") == Refusal(403, IDLE_DESK_REASON)
