"""The admin API: every endpoint, authentication, roles, CSRF and bad input, with
problem+json errors, against a real nats-server."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LoggedOut
from hotdesk_presence.auth import SessionSigner
from tests.presence.conftest import DIRECTORY, VIEWER_TOKEN, Presence
from tests.presence.factories import locked_out, logged_in, pin_rejected

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert "detail" in body
    return body


async def sign_in(p: Presence, user: str = "alice", password: str = "alice-pass") -> str:
    response = await p.client.post("/api/v1/session", json={"username": user, "password": password})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


async def test_desks_list_joins_the_directory_with_who_sits_where(presence: Presence) -> None:
    await presence.append(logged_in("HD0001", "100", 1))
    await presence.settle()
    response = await presence.client.get("/api/v1/desks", headers=presence.auth())
    assert response.status_code == 200
    desks = {d["desk"]: d for d in response.json()["desks"]}
    assert list(desks) == ["HD0001", "HD0002", "HD0003"]
    assert desks["HD0001"]["state"] == "logged_in"
    assert desks["HD0001"]["user"] == "100"
    assert desks["HD0001"]["name"] == "Ada Lovelace"
    assert desks["HD0001"]["vendor"] == "yealink"
    assert desks["HD0001"]["mac"] == "805ec0000001"
    assert desks["HD0001"]["since"].startswith("2026-03-02T09:01")
    assert desks["HD0002"]["state"] == "idle"
    assert desks["HD0002"]["online"] is False


async def test_desks_filter_by_state_user_and_online(presence: Presence) -> None:
    await presence.append(logged_in("HD0001", "100"), logged_in("HD0002", "101"))
    await presence.settle()
    get = presence.client.get
    idle = (await get("/api/v1/desks?state=idle", headers=presence.auth())).json()["desks"]
    assert [d["desk"] for d in idle] == ["HD0003"]
    mine = (await get("/api/v1/desks?user=101", headers=presence.auth())).json()["desks"]
    assert [d["desk"] for d in mine] == ["HD0002"]
    online = (await get("/api/v1/desks?online=true", headers=presence.auth())).json()["desks"]
    assert online == []
    one = (await get("/api/v1/desks/HD0002", headers=presence.auth())).json()
    assert one["user"] == "101"
    assert_problem(await get("/api/v1/desks?state=busy", headers=presence.auth()), 422)


async def test_force_logout_appends_logged_out_reason_admin_with_the_admins_identity(
    presence: Presence,
) -> None:
    await presence.append(logged_in("HD0001", "100"))
    csrf = await sign_in(presence)
    response = await presence.client.post(
        "/api/v1/desks/HD0001/logout", headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 200, response.text
    stored = await presence.store.read(subjects.desk_ledger("HD0001"))
    last = stored[-1].event
    assert isinstance(last, LoggedOut)
    assert last.reason == "admin"
    assert last.cause.actor == "admin:alice"
    again = await presence.client.post(
        "/api/v1/desks/HD0001/logout", headers={"X-CSRF-Token": csrf}
    )
    body = assert_problem(again, 409)
    assert "idle" in body["detail"]
    await presence.settle()
    history = await presence.client.get("/api/v1/desks/HD0001/history", headers=presence.auth())
    entries = history.json()["entries"]
    assert [e["type"] for e in entries] == ["LoggedOut", "LoggedIn"]
    assert (entries[0]["reason"], entries[0]["actor"]) == ("admin", "admin:alice")


async def test_a_token_acts_as_admin_and_the_cli_path_works(presence: Presence) -> None:
    await presence.append(logged_in("HD0002", "101"))
    response = await presence.client.post("/api/v1/desks/HD0002/logout", headers=presence.auth())
    assert response.status_code == 200
    assert response.json()["events"][0]["cause"]["actor"] == "admin:script"


async def test_users_show_desk_and_lockout_and_an_admin_clears_it(presence: Presence) -> None:
    await presence.append(logged_in("HD0003", "102"))
    # A lockout far in the future, so it is in force whatever the clock says.
    await presence.append(pin_rejected("100", 5), locked_out("100", 10_000_000))
    await presence.settle()
    users = (await presence.client.get("/api/v1/users", headers=presence.auth())).json()["users"]
    by_ext = {u["user"]: u for u in users}
    assert by_ext["102"]["desk"] == "HD0003"
    assert by_ext["100"]["locked"] is True
    locked = await presence.client.get("/api/v1/users?locked=true", headers=presence.auth())
    assert [u["user"] for u in locked.json()["users"]] == ["100"]
    one = await presence.client.get("/api/v1/users/102", headers=presence.auth())
    assert one.json()["name"] == "Grace Hopper"
    cleared = await presence.client.post("/api/v1/users/100/lockout/clear", headers=presence.auth())
    assert cleared.status_code == 200, cleared.text
    await presence.settle()
    user = (await presence.client.get("/api/v1/users/100", headers=presence.auth())).json()
    assert user["locked"] is False
    history = await presence.client.get("/api/v1/users/100/history", headers=presence.auth())
    assert history.json()["entries"][0]["type"] == "PinLockoutCleared"
    again = await presence.client.post("/api/v1/users/100/lockout/clear", headers=presence.auth())
    assert_problem(again, 409)


async def test_webhook_deliveries_are_listed(presence: Presence) -> None:
    response = await presence.client.get("/api/v1/webhooks/deliveries", headers=presence.auth())
    assert response.json() == {"deliveries": []}


@pytest.mark.parametrize(
    "path",
    ["/api/v1/desks", "/api/v1/users", "/api/v1/desks/HD0001/history", "/api/v1/events"],
)
async def test_no_credentials_is_401_problem(presence: Presence, path: str) -> None:
    response = await presence.client.get(path)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_wrong_password_or_token_is_refused(presence: Presence) -> None:
    bad = await presence.client.post(
        "/api/v1/session", json={"username": "alice", "password": "nope"}
    )
    assert_problem(bad, 401)
    nobody = await presence.client.post(
        "/api/v1/session", json={"username": "mallory", "password": "x"}
    )
    assert_problem(nobody, 401)
    token = await presence.client.get("/api/v1/desks", headers={"Authorization": "Bearer wrong"})
    assert_problem(token, 401)
    scheme = await presence.client.get("/api/v1/desks", headers={"Authorization": "Basic eA=="})
    assert_problem(scheme, 401)


async def test_a_forged_or_expired_session_is_refused(presence: Presence) -> None:
    presence.client.cookies.set("hotdesk_session", "eyJ1IjoiYWxpY2UifQ.deadbeef")
    assert_problem(await presence.client.get("/api/v1/desks"), 401)
    from datetime import UTC, datetime, timedelta

    from hotdesk_presence.auth import Principal

    other = SessionSigner(b"k" * 32, ttl=timedelta(seconds=1))
    value, _ = other.issue(Principal("alice", "admin", "session"), datetime.now(UTC))
    presence.client.cookies.set("hotdesk_session", value)
    assert_problem(await presence.client.get("/api/v1/desks"), 401)
    expired, _ = presence.deps.signer.issue(
        Principal("alice", "admin", "session"), datetime.now(UTC) - timedelta(days=2)
    )
    presence.client.cookies.set("hotdesk_session", expired)
    body = assert_problem(await presence.client.get("/api/v1/desks"), 401)
    assert "expired" in body["detail"]


async def test_session_cookie_is_httponly_samesite_strict_and_whoami_works(
    presence: Presence,
) -> None:
    response = await presence.client.post(
        "/api/v1/session", json={"username": "victor", "password": "victor-pass"}
    )
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("hotdesk_session="))
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    assert "Max-Age=" in session
    me = await presence.client.get("/api/v1/session")
    assert me.json()["user"] == "victor"
    assert me.json()["role"] == "viewer"


async def test_a_viewer_cannot_act(presence: Presence) -> None:
    await presence.append(logged_in("HD0001", "100"))
    csrf = await sign_in(presence, "victor", "victor-pass")
    by_session = await presence.client.post(
        "/api/v1/desks/HD0001/logout", headers={"X-CSRF-Token": csrf}
    )
    assert_problem(by_session, 403)
    presence.client.cookies.clear()
    by_token = await presence.client.post(
        "/api/v1/users/100/lockout/clear", headers=presence.auth(VIEWER_TOKEN)
    )
    assert_problem(by_token, 403)
    desks = await presence.client.get("/api/v1/desks", headers=presence.auth(VIEWER_TOKEN))
    assert desks.status_code == 200


async def test_a_cookie_session_without_the_csrf_header_cannot_act(presence: Presence) -> None:
    await presence.append(logged_in("HD0001", "100"))
    await sign_in(presence)
    missing = await presence.client.post("/api/v1/desks/HD0001/logout")
    assert_problem(missing, 403)
    wrong = await presence.client.post(
        "/api/v1/desks/HD0001/logout", headers={"X-CSRF-Token": "guess"}
    )
    assert_problem(wrong, 403)
    stored = await presence.store.read(subjects.desk_ledger("HD0001"))
    assert len(stored) == 1


async def test_unknown_desk_is_404_and_malformed_names_are_422(presence: Presence) -> None:
    auth = presence.auth()
    assert_problem(await presence.client.get("/api/v1/desks/HD0999", headers=auth), 404)
    assert_problem(await presence.client.post("/api/v1/desks/HD0999/logout", headers=auth), 404)
    assert_problem(await presence.client.get("/api/v1/users/999/history", headers=auth), 404)
    assert_problem(await presence.client.get("/api/v1/desks/desk-1", headers=auth), 422)
    body = assert_problem(
        await presence.client.post("/api/v1/users/10x/lockout/clear", headers=auth), 422
    )
    assert body["errors"][0]["loc"] == ["path", "ext"]
    assert_problem(await presence.client.get("/api/v1/nothing-here", headers=auth), 404)
    assert_problem(await presence.client.post("/api/v1/session", json={"username": "a"}), 422)


async def test_sign_out_needs_csrf_and_clears_the_session(presence: Presence) -> None:
    csrf = await sign_in(presence)
    assert_problem(await presence.client.delete("/api/v1/session"), 403)
    out = await presence.client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert_problem(await presence.client.get("/api/v1/desks"), 401)


async def test_openapi_health_readiness_and_console_are_served(presence: Presence) -> None:
    spec = (await presence.client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/desks/{desk}/logout" in spec["paths"]
    assert "/api/v1/users/{ext}/lockout/clear" in spec["paths"]
    assert (await presence.client.get("/healthz")).json() == {"status": "ok"}
    assert_problem(await presence.client.get("/readyz"), 503)
    presence.parts["ready"].set()
    assert (await presence.client.get("/readyz")).status_code == 200
    index = await presence.client.get("/")
    assert index.status_code == 200
    assert "text/html" in index.headers["content-type"]
    script = await presence.client.get("/console/app.js")
    assert "EventSource" in script.text
    assert_problem(await presence.client.get("/console/secret.txt"), 422)


async def test_repeated_wrong_passwords_are_throttled_then_allowed_again(
    presence: Presence,
) -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 3, 2, 9, 0, tzinfo=UTC)]
    presence.deps.clock = lambda: now[0]
    wrong = {"username": "alice", "password": "guess"}
    for _ in range(presence.deps.throttle.limit):
        assert_problem(await presence.client.post("/api/v1/session", json=wrong), 401)
    right = {"username": "alice", "password": "alice-pass"}
    body = assert_problem(await presence.client.post("/api/v1/session", json=right), 429)
    assert "try again after" in body["detail"]
    now[0] += timedelta(minutes=6)
    assert (await presence.client.post("/api/v1/session", json=right)).status_code == 200


async def test_a_session_follows_the_directory_when_an_admin_is_demoted_or_removed(
    presence: Presence,
) -> None:
    await presence.append(logged_in("HD0001", "100"))
    csrf = await sign_in(presence)
    alice, victor = DIRECTORY.admins
    demoted = msgspec.structs.replace(
        DIRECTORY, admins=[msgspec.structs.replace(alice, role="viewer"), victor]
    )
    presence.deps.directory = lambda: demoted
    action = await presence.client.post(
        "/api/v1/desks/HD0001/logout", headers={"X-CSRF-Token": csrf}
    )
    assert_problem(action, 403)
    removed = msgspec.structs.replace(DIRECTORY, admins=[victor])
    presence.deps.directory = lambda: removed
    assert_problem(await presence.client.get("/api/v1/desks"), 401)
