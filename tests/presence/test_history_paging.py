"""History pages: the read model's newest entries first, then the ledger, until every
event of a desk or user has been handed out, against a real nats-server."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LedgerEvent, LoggedOut, LogoutReason, Roamed
from hotdesk_presence.api import create_app
from hotdesk_presence.history_pages import HistoryPages
from hotdesk_presence.projections.history import DEFAULT_CAP
from tests.presence.conftest import VIEWER_TOKEN, Presence
from tests.presence.factories import logged_in, logged_out, pin_rejected, roamed
from tests.presence.test_api import assert_problem

ROUNDS = 60


def busy_ledger() -> list[LedgerEvent]:
    """More than the read model's cap for desk HD0001 and for user 100, mixed with
    other desks' and users' events, PIN events (on the user's subject, at HD0001) and
    roams (at HD0002, from 101 to 100)."""
    events: list[LedgerEvent] = []
    for i in range(ROUNDS):
        admin = i % 3 == 0
        events.append(logged_in("HD0001", "100", i))
        events.append(
            logged_out(
                "HD0001",
                "100",
                i + 0.5,
                reason=LogoutReason.ADMIN if admin else LogoutReason.USER_CODE,
                actor="admin:alice" if admin else "",
            )
        )
        events += [logged_in("HD0003", "102", i), logged_out("HD0003", "102", i + 0.4)]
        if i % 5 == 0:
            events.append(pin_rejected("100", 1, i + 0.6))
        if i % 10 == 0:
            events += [
                logged_in("HD0002", "101", i + 0.7),
                roamed("HD0002", "101", "100", i + 0.8),
                logged_out("HD0002", "100", i + 0.9),
            ]
    return events


def involves(event: LedgerEvent, key: str) -> bool:
    kind, _, name = key.partition(".")
    if kind == "desk":
        return event.desk == name
    return event.user == name or (isinstance(event, Roamed) and event.from_user == name)


async def ledger_history(p: Presence, key: str) -> list[dict[str, Any]]:
    """What the ledger holds for ``key``, newest first, as the API shows it."""
    stored = await p.store.read(subjects.LEDGER_ALL)
    return [
        {
            "seq": s.seq,
            "type": type(s.event).__name__,
            "desk": s.event.desk,
            "user": s.event.user,
            "actor": s.event.cause.actor,
            "reason": str(s.event.reason) if isinstance(s.event, LoggedOut) else "",
            "from_user": s.event.from_user if isinstance(s.event, Roamed) else "",
        }
        for s in reversed(stored)
        if involves(s.event, key)
    ]


async def walk(
    client: httpx.AsyncClient, first: str, headers: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page from ``first`` on, following ``next``; the entries and the pages."""
    entries: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    url: str | None = first
    while url is not None:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        entries += page["entries"]
        url = page["next"]
        if url is not None:
            assert response.headers["Link"] == f'<{url}>; rel="next"'
            assert url.endswith(f"?before={page['next_before']}&limit=7")
        assert len(pages) < 500, "the pages never end"
    return entries, pages


def shown(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("seq", "type", "desk", "user", "actor", "reason", "from_user")
    return [{k: e[k] for k in keep} for e in entries]


@pytest.mark.parametrize(
    ("path", "key"),
    [("/api/v1/desks/HD0001/history", "desk.HD0001"), ("/api/v1/users/100/history", "user.100")],
)
async def test_history_pages_lead_through_every_ledger_event_beyond_the_cap(
    presence: Presence, path: str, key: str
) -> None:
    await presence.append(*busy_ledger())
    await presence.settle()
    expected = await ledger_history(presence, key)
    assert len(expected) > DEFAULT_CAP + 20

    entries, pages = await walk(presence.client, f"{path}?limit=7", presence.auth(VIEWER_TOKEN))

    assert shown(entries) == expected
    assert [e["seq"] for e in entries] == sorted((e["seq"] for e in entries), reverse=True)
    assert pages[-1]["next"] is None
    assert pages[-1]["next_before"] is None
    assert all(len(p["entries"]) == 7 for p in pages[:-1])
    reasons = {e["reason"] for e in entries if e["type"] == "LoggedOut"}
    assert {"admin", "user_code"} <= reasons
    assert any(e["actor"] == "admin:alice" for e in entries)


async def test_first_page_comes_from_the_read_model_and_older_ones_from_the_ledger(
    presence: Presence,
) -> None:
    await presence.append(*busy_ledger())
    await presence.settle()
    pages = HistoryPages(presence.js, presence.deps.read)
    app = create_app(dataclasses.replace(presence.deps, history=pages))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        first = (await client.get("/api/v1/desks/HD0001/history", headers=presence.auth())).json()
        assert len(first["entries"]) == 50
        assert pages.messages_read == 0
        older = await client.get(first["next"], headers=presence.auth())
        assert older.status_code == 200, older.text
    expected = await ledger_history(presence, "desk.HD0001")
    assert shown(first["entries"] + older.json()["entries"]) == expected[:100]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        oldest = await client.get(
            f"/api/v1/desks/HD0001/history?before={expected[99]['seq']}&limit=500",
            headers=presence.auth(),
        )
    assert shown(oldest.json()["entries"]) == expected[100:]
    assert oldest.json()["next"] is None
    assert pages.messages_read > 0


async def test_pages_that_stop_at_their_scan_budget_still_reach_every_event(
    presence: Presence,
) -> None:
    await presence.append(*busy_ledger())
    await presence.settle()
    pages = HistoryPages(presence.js, presence.deps.read, scan_budget=8)
    app = create_app(dataclasses.replace(presence.deps, history=pages))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        entries, walked = await walk(client, "/api/v1/users/100/history?limit=7", presence.auth())
    assert shown(entries) == await ledger_history(presence, "user.100")
    # The user's logins sit among every desk's: some pages ended at their budget.
    assert any(len(p["entries"]) < 7 for p in walked[:-1])


async def test_a_history_shorter_than_the_cap_is_one_page_without_next(
    presence: Presence,
) -> None:
    await presence.append(logged_in("HD0002", "101", 1), logged_out("HD0002", "101", 2))
    await presence.settle()
    page = (
        await presence.client.get("/api/v1/desks/HD0002/history", headers=presence.auth())
    ).json()
    assert [e["type"] for e in page["entries"]] == ["LoggedOut", "LoggedIn"]
    assert page["next"] is None
    assert page["next_before"] is None


@pytest.mark.parametrize(
    "query",
    [
        "before=abc",
        "before=0",
        "before=-3",
        "before=1.5",
        "before=",
        "before=99999999",
        "limit=0",
        "limit=501",
        "limit=ten",
        "before=1&limit=-1",
    ],
)
async def test_bad_history_cursors_are_problems(presence: Presence, query: str) -> None:
    await presence.append(logged_in("HD0001", "100", 1))
    await presence.settle()
    for path in ("/api/v1/desks/HD0001/history", "/api/v1/users/100/history"):
        response = await presence.client.get(f"{path}?{query}", headers=presence.auth())
        body = assert_problem(response, 400)
        assert body["title"] == "Bad Request"
        assert ("before" in body["detail"]) or ("limit" in body["detail"])


async def test_openapi_describes_history_paging(presence: Presence) -> None:
    doc = (await presence.client.get("/api/v1/openapi.json")).json()
    for path in ("/api/v1/desks/{desk}/history", "/api/v1/users/{ext}/history"):
        get = doc["paths"][path]["get"]
        params = {p["name"]: p for p in get["parameters"]}
        assert "ledger sequence" in params["before"]["description"]
        assert "entries per page" in params["limit"]["description"]
        assert "next" in get["description"]
        assert "400" in get["responses"]
        schema = get["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/HistoryPageDoc")
    page = doc["components"]["schemas"]["HistoryPageDoc"]["properties"]
    assert {"entries", "next", "next_before"} <= set(page)
