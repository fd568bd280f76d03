"""The committed AsyncAPI document is generated from the contracts and kept current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hotdesk_contracts import asyncapi, events

COMMITTED = Path(__file__).resolve().parents[2] / "contracts" / "asyncapi.json"


def test_committed_asyncapi_document_is_current() -> None:
    assert COMMITTED.read_text() == asyncapi.render(), (
        "contracts/asyncapi.json is stale: run `make asyncapi` and commit it"
    )


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        for value in node.values():
            found += _refs(value)
        return found
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_every_reference_in_the_document_resolves() -> None:
    doc = asyncapi.document()
    for ref in _refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"dangling {ref}"
            node = node[part]


def test_every_ledger_event_is_documented_on_a_ledger_channel() -> None:
    doc = json.loads(COMMITTED.read_text())
    documented = set(doc["channels"]["ledgerDesk"]["messages"]) | set(
        doc["channels"]["ledgerUser"]["messages"]
    )
    assert documented == {cls.__name__ for cls in events.ALL_EVENTS}
    assert doc["channels"]["ledgerDesk"]["address"] == "hotdesk.ledger.desk.{desk}"
