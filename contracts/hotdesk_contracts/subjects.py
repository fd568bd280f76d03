"""NATS subject builders. Services never format subjects themselves.

Tokens that come from outside (desk names, extensions, call ids) are checked so that
nobody can smuggle a ``.``, ``*`` or ``>`` into a subject.
"""

from __future__ import annotations

import hashlib
import re

LEDGER_PREFIX = "hotdesk.ledger"
LEDGER_ALL = f"{LEDGER_PREFIX}.>"
LEDGER_DESKS = f"{LEDGER_PREFIX}.desk.*"
LEDGER_USERS = f"{LEDGER_PREFIX}.user.*"

_TOKEN = re.compile(r"^[A-Za-z0-9_\-+#~@:]+$")


class SubjectTokenError(ValueError):
    """A value that cannot be one token of a NATS subject."""


def token(value: str) -> str:
    """Return ``value`` if it is safe as a single subject token."""
    if not _TOKEN.fullmatch(value):
        raise SubjectTokenError(f"{value!r} cannot be used in a NATS subject")
    return value


def call_token(call_id: str) -> str:
    """A SIP Call-ID as one subject token: the first 32 hex digits of its SHA-256.

    A Call-ID may hold any of RFC 3261 §25.1's ``word`` characters, so mapping the
    unsafe ones to ``_`` (or cutting long ones short) would let two calls share a
    subject; a hash keeps distinct Call-IDs apart (128 bits) at a fixed length.
    Subscribers still check the event's ``call_id``.
    """
    return hashlib.sha256(call_id.encode()).hexdigest()[:32]


def desk_ledger(desk: str) -> str:
    """``hotdesk.ledger.desk.<desk>``: the desk aggregate's events."""
    return f"{LEDGER_PREFIX}.desk.{token(desk)}"


def user_ledger(ext: str) -> str:
    """``hotdesk.ledger.user.<ext>``: the user aggregate's events."""
    return f"{LEDGER_PREFIX}.user.{token(ext)}"


# --- edge events (published by sip-edge) -------------------------------------------
EDGE_PREFIX = "hotdesk.edge"
EDGE_DIAL_ALL = f"{EDGE_PREFIX}.dial.*"
EDGE_CALL_ALL = f"{EDGE_PREFIX}.call.>"
EDGE_REGISTRATION_ALL = f"{EDGE_PREFIX}.registration.>"
EDGE_CALL_STATE_ALL = f"{EDGE_PREFIX}.callstate.>"


def edge_dial(desk: str) -> str:
    """A call to a feature code arrived from ``desk`` (or extension)."""
    return f"{EDGE_PREFIX}.dial.{token(desk)}"


def edge_call_event(call_id: str, kind: str) -> str:
    """Per-call events: ``dtmf``, ``ended``, ``played``."""
    return f"{EDGE_PREFIX}.call.{call_token(call_id)}.{token(kind)}"


def edge_call_events(call_id: str) -> str:
    """Wildcard for every event of one call."""
    return f"{EDGE_PREFIX}.call.{call_token(call_id)}.*"


def edge_registration(aor: str, kind: str) -> str:
    """``registered`` / ``unregistered`` / ``expired`` for an address-of-record user."""
    return f"{EDGE_PREFIX}.registration.{token(aor)}.{token(kind)}"


def edge_call_state(ext: str) -> str:
    """Call-state changes (trying, ringing, answered, ended) for a user or desk."""
    return f"{EDGE_PREFIX}.callstate.{token(ext)}"


# --- commands to the edge -------------------------------------------------------------
EDGE_COMMAND_PREFIX = "hotdesk.cmd.edge"


def edge_command(edge_id: str) -> str:
    """Commands for one edge instance (the one that holds the call)."""
    return f"{EDGE_COMMAND_PREFIX}.{token(edge_id)}"


EDGE_COMMAND_ANY = f"{EDGE_COMMAND_PREFIX}.any"
"""Commands any edge can carry out (e.g. send a check-sync NOTIFY): queue group."""

# --- provisioning ---------------------------------------------------------------------
PROVISIONING_PREFIX = "hotdesk.provisioning"
PROVISIONING_ALL = f"{PROVISIONING_PREFIX}.>"


def provisioning_event(desk: str) -> str:
    """Reprovision progress for a desk (``ReprovisionConfirmed`` / ``ReprovisionFailed``)."""
    return f"{PROVISIONING_PREFIX}.desk.{token(desk)}"


PROVISIONING_UNKNOWN_DEVICE = f"{PROVISIONING_PREFIX}.unknown-device"

SERVED_PREFIX = "hotdesk.served"
SERVED_ALL = f"{SERVED_PREFIX}.*"
"""Core NATS (outside the provisioning stream): config files served, per desk."""


def config_served(desk: str) -> str:
    """A provisioning replica served a config file to ``desk``."""
    return f"{SERVED_PREFIX}.{token(desk)}"


# --- admin requests -------------------------------------------------------------------
DIRECTORY_RELOAD = "hotdesk.directory.reload"
"""Request: ask every service to reload the directory from its file."""
DIRECTORY_CHANGED = "hotdesk.directory.changed"
"""Event: a new directory revision was published to the directory KV bucket."""
