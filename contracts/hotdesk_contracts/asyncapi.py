"""The AsyncAPI 3.0 document for the events other systems can subscribe to,
generated from the contracts.

``python -m hotdesk_contracts.asyncapi > contracts/asyncapi.json`` regenerates the
committed copy; a test fails when the committed copy is not current.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgspec

from . import messages, subjects
from .events import DESK_EVENTS, USER_EVENTS

VERSION = "1.0.0"


def _message(cls: type, summary: str) -> dict[str, Any]:
    return {
        "name": cls.__name__,
        "title": cls.__name__,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
    }


def _first_line(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


def document() -> dict[str, Any]:
    """Build the AsyncAPI document as a dict (stable key order)."""
    published: list[type] = [
        *DESK_EVENTS,
        *USER_EVENTS,
        messages.RegistrationChanged,
        messages.CallStateChanged,
        messages.ReprovisionConfirmed,
        messages.ReprovisionFailed,
        messages.UnknownDeviceSeen,
    ]
    _, components = msgspec.json.schema_components(
        published, ref_template="#/components/schemas/{name}"
    )

    def channel(
        address: str, params: dict[str, str], classes: list[type], doc: str
    ) -> dict[str, Any]:
        return {
            "address": address,
            "description": doc,
            "parameters": {name: {"description": d} for name, d in params.items()},
            "messages": {
                c.__name__: {"$ref": f"#/components/messages/{c.__name__}"} for c in classes
            },
        }

    channels = {
        "ledgerDesk": channel(
            subjects.LEDGER_PREFIX + ".desk.{desk}",
            {"desk": "Desk name, e.g. HD0001"},
            list(DESK_EVENTS),
            "Seating events of one desk, in order. Stream HOTDESK_LEDGER (never deleted).",
        ),
        "ledgerUser": channel(
            subjects.LEDGER_PREFIX + ".user.{ext}",
            {"ext": "Extension number"},
            list(USER_EVENTS),
            "PIN events of one user, in order. Stream HOTDESK_LEDGER.",
        ),
        "registrations": channel(
            subjects.EDGE_PREFIX + ".registration.{aor}.{kind}",
            {
                "aor": "Address-of-record user part",
                "kind": "registered, refreshed, unregistered, expired",
            },
            [messages.RegistrationChanged],
            "Registration bindings as the SIP edges change them. Stream HOTDESK_EDGE.",
        ),
        "callStates": channel(
            subjects.EDGE_PREFIX + ".callstate.{ext}",
            {"ext": "User extension or desk name"},
            [messages.CallStateChanged],
            "Call phases of routed calls, for presence and BLF. Stream HOTDESK_EDGE.",
        ),
        "provisioning": channel(
            subjects.PROVISIONING_PREFIX + ".desk.{desk}",
            {"desk": "Desk name"},
            [messages.ReprovisionConfirmed, messages.ReprovisionFailed],
            "Outcome of reprovisioning a desk after a login or logout.",
        ),
        "unknownDevices": channel(
            subjects.PROVISIONING_UNKNOWN_DEVICE,
            {},
            [messages.UnknownDeviceSeen],
            "Phones that asked the provisioning server for a file no desk matches.",
        ),
    }
    operations = {
        f"receive_{name}": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": ch["description"],
        }
        for name, ch in channels.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "hotdesk events",
            "version": VERSION,
            "description": (
                "Every login, logout and roam of the hotdesk ledger, and the edge and "
                "provisioning events around them. Subscribe on NATS to `hotdesk.ledger.>` "
                "(a JetStream consumer on stream HOTDESK_LEDGER replays from the start)."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {c.__name__: _message(c, _first_line(c)) for c in published},
            "schemas": components,
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
