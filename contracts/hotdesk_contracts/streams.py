"""JetStream streams, KV buckets and object stores, as data.

``hotdesk_runtime`` creates them idempotently at start; ``replicas`` is raised to 3 by
configuration on a cluster.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from . import subjects


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    subjects: list[str]
    description: str
    max_age_seconds: float = 0.0
    """0 keeps messages forever."""
    duplicate_window_seconds: float = 120.0
    storage: str = "file"
    max_msgs_per_subject: int = -1
    """-1: no limit per subject."""
    max_bytes: int = -1
    """-1: no limit on the stream's size."""
    discard: Literal["old", "new"] = "old"
    """At a limit, drop the oldest messages (``old``) or refuse new ones (``new``)."""
    allow_direct: bool = False
    """Answer direct gets (``$JS.API.DIRECT.GET``): reads of single messages by
    subject, served by any replica, as the ledger's lookups walk back an aggregate."""
    append_only: bool = False
    """Deny deleting messages and purging the stream (the ledger: DESIGN.md "Event
    sourcing on JetStream" — never deleted, never rewritten)."""


def stream_api_config(spec: StreamSpec, replicas: int = 1) -> dict[str, Any]:
    """The JetStream API configuration of ``spec``, as ``$JS.API.STREAM.CREATE`` takes it.

    Plain JSON data (durations in nanoseconds, enums as their API strings), so every
    client builds the same stream from one place: with nats-py,
    ``nats.js.api.StreamConfig.from_response(stream_api_config(spec))``.
    """
    return {
        "name": spec.name,
        "description": spec.description,
        "subjects": list(spec.subjects),
        "storage": spec.storage,
        "max_age": int(spec.max_age_seconds * 1_000_000_000),
        "duplicate_window": int(spec.duplicate_window_seconds * 1_000_000_000),
        "max_msgs_per_subject": spec.max_msgs_per_subject,
        "max_bytes": spec.max_bytes,
        "discard": spec.discard,
        "num_replicas": replicas,
        "deny_delete": spec.append_only,
        "deny_purge": spec.append_only,
        "allow_direct": spec.allow_direct,
    }


class KeyValueSpec(msgspec.Struct, frozen=True, kw_only=True):
    bucket: str
    description: str
    ttl_seconds: float = 0.0
    history: int = 1
    """Per-key TTLs (for registrations) need a server that allows them."""
    allow_msg_ttl: bool = False


class ObjectStoreSpec(msgspec.Struct, frozen=True, kw_only=True):
    bucket: str
    description: str


LEDGER = StreamSpec(
    name="HOTDESK_LEDGER",
    subjects=[subjects.LEDGER_ALL],
    description="The hot-desking ledger: logins, logouts, roams, PIN events. Never deleted.",
    duplicate_window_seconds=600.0,
    allow_direct=True,
    append_only=True,
)
EDGE = StreamSpec(
    name="HOTDESK_EDGE",
    subjects=[subjects.EDGE_REGISTRATION_ALL, subjects.EDGE_CALL_STATE_ALL],
    description="Registrations and call states from the SIP edges, kept a day for projections.",
    max_age_seconds=86400.0,
)
PROVISIONING = StreamSpec(
    name="HOTDESK_PROVISIONING",
    subjects=[subjects.PROVISIONING_ALL],
    description="Reprovision outcomes and unknown devices, kept 30 days.",
    max_age_seconds=30 * 86400.0,
    # Unknown-device reports come from unauthenticated requests: bounded per subject
    # and in total, the oldest dropped first, so nobody can fill the disk with them.
    max_msgs_per_subject=1_000,
    max_bytes=256 * 1024 * 1024,
    discard="old",
)
STREAMS: tuple[StreamSpec, ...] = (LEDGER, EDGE, PROVISIONING)

REGISTRATIONS = KeyValueSpec(
    bucket="hotdesk_registrations",
    description="Location service: AOR -> contacts, each key expires with its binding.",
    ttl_seconds=3600.0,
    allow_msg_ttl=True,
)
DIRECTORY = KeyValueSpec(
    bucket="hotdesk_directory",
    description="The current directory (extensions, desks, dial codes), as loaded from config.",
    history=5,
)
DESKS = KeyValueSpec(bucket="hotdesk_desks", description="Read model: desks and who sits there.")
USERS = KeyValueSpec(bucket="hotdesk_users", description="Read model: user -> desk, lockouts.")
BLF = KeyValueSpec(bucket="hotdesk_blf", description="Read model: dialog state per extension.")
HISTORY = KeyValueSpec(
    bucket="hotdesk_history", description="Read model: recent ledger events per desk/user."
)
PROJECTIONS = KeyValueSpec(
    bucket="hotdesk_projections",
    description="Projection checkpoints: last applied ledger sequence.",
)
PROVISIONER = KeyValueSpec(
    bucket="hotdesk_provisioner",
    description=(
        "Provisioner state shared by its replicas: the digest nonce key, reprovisions in"
        " flight, phone vendors learned from requests."
    ),
)
NONCE_COUNTS = KeyValueSpec(
    bucket="hotdesk_nonce_counts",
    description="Provisioning digest nonce counts seen, so no replica accepts a replayed nc.",
    ttl_seconds=900.0,
)
DESK_STATUS = KeyValueSpec(
    bucket="hotdesk_desk_status",
    description="Read model: each desk phone's registration and reprovisioning status.",
)
PRESENCE = KeyValueSpec(
    bucket="hotdesk_presence",
    description="Presence replicas' shared secrets: the session signing key, the first admin.",
)
KEY_VALUES: tuple[KeyValueSpec, ...] = (
    REGISTRATIONS,
    DIRECTORY,
    DESKS,
    USERS,
    BLF,
    HISTORY,
    PROJECTIONS,
    PROVISIONER,
    NONCE_COUNTS,
    DESK_STATUS,
    PRESENCE,
)

PROMPTS = ObjectStoreSpec(bucket="hotdesk_prompts", description="Prompt sets (audio), versioned.")
OBJECT_STORES: tuple[ObjectStoreSpec, ...] = (PROMPTS,)
