"""The config key reference, generated from the schema in ``hotdesk_contracts.directory``.

``docs/configuration.md`` embeds :func:`render_reference` between two markers; a test
keeps it current. Descriptions come from the attribute docstrings in the schema
source, so the schema stays the one place a key is described.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import msgspec

from hotdesk_contracts import directory as schema
from hotdesk_contracts.directory import Config

BEGIN = "<!-- BEGIN GENERATED REFERENCE (hotdesk_runtime.config_reference) -->"
END = "<!-- END GENERATED REFERENCE -->"


# Keys the schema leaves undocumented (their meaning is plain from the name there).
_MEANINGS: dict[str, str] = {
    "emergency_numbers": "Numbers an idle desk may call; routed to the emergency trunk.",
    "extensions[].number": "The extension number (2-8 digits); the login is `*77*<number>*`.",
    "extensions[].name": "Display name shown on the desk phone and to callees.",
    "extensions[].language": "Prompt language of the IVR for this user.",
    "desks[].name": "The desk's own SIP user and display name (HD + 4-6 digits).",
    "desks[].mac": "The phone's MAC address: provisioning finds the desk by it.",
    "desks[].sip_password": "Digest password of the desk's own SIP account.",
    "desks[].model": "Phone model, for per-model templates; empty: detected.",
    "desks[].policy.idle_logout_minutes": "Overrides policies.idle_logout_minutes.",
    "desks[].policy.max_login_minutes": "Overrides policies.max_login_minutes.",
    "desks[].policy.daily_logout": "Overrides policies.daily_logout (HH:MM).",
    "dial_codes.logout": "Dialled from a desk to log out (must not be a login code).",
    "dial_codes.other[].code": "The code as dialled; may not start with the hot-desk prefix.",
    "dial_codes.other[].name": "What it does (shown in problems).",
    "trunks[].name": "A name for logs and problems.",
    "policies.pin_max_failures": "Wrong PINs within pin_window_seconds before a lockout.",
    "policies.pin_window_seconds": "Window in which PIN failures count, across calls and desks.",
    "policies.pin_lockout_seconds": "How long a locked-out user cannot log in.",
    "policies.pin_tries_per_call": "PIN attempts in one call before the IVR hangs up.",
    "policies.pin_digit_timeout_seconds": "Silence after which a PIN entry is taken as done.",
    "policies.timezone": "IANA time zone for daily_logout (e.g. Europe/Berlin).",
    "admins[].username": "Login name for the admin console.",
    "admins[].password_hash": "argon2 hash (``hotdesk hash-pin --password`` makes one).",
    "admins[].role": "admin may log users out and change things; viewer only reads.",
    "api_tokens[].name": "A name for logs.",
    "api_tokens[].role": "What the token may do, as for admins.",
    "webhooks[].name": "A name for logs.",
    "webhooks[].url": "Where ledger events are POSTed.",
    "nats.data_dir": "JetStream store of the embedded server (kept across restarts).",
    "nats.credentials": "A NATS .creds file for an external server.",
    "nats.tls_ca": "CA bundle to verify an external server's TLS certificate.",
    "nats.tls_cert": "Client certificate for mutual TLS with an external server.",
    "nats.tls_key": "Key of tls_cert.",
    "nats.replicas": "Replicas of every stream and bucket (3 on a cluster).",
    "nats.embedded_port": "Client port of the embedded server, on 127.0.0.1.",
    "sip.listen": "Address the edge binds for SIP.",
    "sip.port": "SIP over UDP and TCP.",
    "sip.tls_port": "SIP over TLS, when tls_cert is set.",
    "sip.tls_cert": "Certificate (PEM) for SIP over TLS.",
    "sip.tls_key": "Key of tls_cert.",
    "sip.realm": "Digest authentication realm (RFC 3261 section 22).",
    "sip.nonce_lifetime_seconds": "How long a digest nonce stays valid.",
    "sip.min_expires": "Shortest registration accepted (423 Interval Too Brief below).",
    "sip.max_expires": "Longest registration granted.",
    "sip.max_message_bytes": "Larger SIP messages are refused.",
    "sip.rate_limit_per_second": "Requests per second per source address.",
    "sip.rate_limit_burst": "Burst allowance of the rate limit.",
    "sip.auth_fail_limit": "Failed authentications per source within the window before a block.",
    "sip.auth_fail_window_seconds": "Window for auth_fail_limit.",
    "sip.auth_block_seconds": "How long a source stays blocked.",
    "sip.rtp_port_min": "First UDP port for RTP of calls the edge answers.",
    "sip.rtp_port_max": "Last UDP port for RTP (must be >= rtp_port_min).",
    "sip.media_timeout_seconds": "A call without RTP this long is hung up.",
    "admin.listen": "Address the admin API and console bind.",
    "admin.port": "HTTP port of the admin API and console.",
    "admin.tls_cert": "Certificate (PEM) to serve HTTPS.",
    "admin.tls_key": "Key of tls_cert.",
    "provisioning.listen": "Address the provisioning server binds.",
    "provisioning.port": "HTTP port phones fetch their configuration from.",
    "provisioning.tls_cert": "Certificate (PEM) to serve HTTPS.",
    "provisioning.tls_key": "Key of tls_cert.",
    "provisioning.trusted_proxies": "Addresses whose X-Forwarded-For is believed.",
    "provisioning.auth": "HTTP authentication scheme phones use.",
    "provisioning.rate_limit_per_minute": "Requests per minute per source address.",
    "provisioning.retries": "check-sync retries when a phone does not fetch its file.",
    "provisioning.retry_backoff_seconds": "First delay between retries (doubles).",
    "provisioning.stage_timeout_seconds": "How long each reprovisioning stage may take.",
    "provisioning.allow_legacy_digest": (
        "Accept Digest answers without qop (RFC 2069: no replay protection); old firmware only."
    ),
    "telemetry.log_format": "json for machines, text for people.",
    "telemetry.log_level": "DEBUG, INFO, WARNING or ERROR.",
}


def _attribute_docs() -> dict[tuple[str, str], str]:
    """(class name, field name) → the docstring written under the field."""
    tree = ast.parse(inspect.getsource(schema))
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for i, stmt in enumerate(body[:-1]):
            nxt = body[i + 1]
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[(node.name, stmt.target.id)] = " ".join(nxt.value.value.split())
    return docs


def _type_name(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.Metadata):
        described = (info.extra_json_schema or {}).get("description")
        inner = _type_name(info.type)
        return f"{inner}: {described}" if described else inner
    if isinstance(info, msgspec.inspect.StrType):
        return "string" + (f" (`{info.pattern}`)" if info.pattern else "")
    if isinstance(info, msgspec.inspect.BoolType):
        return "boolean"
    if isinstance(info, msgspec.inspect.IntType):
        return "integer"
    if isinstance(info, msgspec.inspect.FloatType):
        return "number"
    if isinstance(info, msgspec.inspect.LiteralType):
        return " \\| ".join(f'"{v}"' for v in info.values)
    if isinstance(info, msgspec.inspect.ListType):
        return f"list of {_type_name(info.item_type)}"
    if isinstance(info, msgspec.inspect.UnionType):
        return " or ".join(
            "none" if isinstance(t, msgspec.inspect.NoneType) else _type_name(t) for t in info.types
        )
    if isinstance(info, msgspec.inspect.StructType):
        return f"table ({info.cls.__name__})"
    return type(info).__name__.removesuffix("Type").lower()


def _default(field: msgspec.inspect.Field) -> str:
    if field.required:
        return "**required**"
    value: Any = field.default
    if value is msgspec.NODEFAULT and field.default_factory is not msgspec.NODEFAULT:
        value = field.default_factory()
    if isinstance(value, msgspec.Struct):
        return "(table)"
    if value is None:
        return "none"
    return f"`{msgspec.json.encode(value).decode()}`"


def _section(
    title: str, prefix: str, info: msgspec.inspect.StructType, docs: dict[tuple[str, str], str]
) -> list[str]:
    lines = [f"### {title}", ""]
    class_doc = info.cls.__dict__.get("__doc__")
    if class_doc and info.cls is not Config:
        lines += [" ".join(class_doc.split()), ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, str, msgspec.inspect.StructType]] = []
    for field in info.fields:
        key = f"{prefix}{field.name}"
        kind = field.type
        if isinstance(kind, msgspec.inspect.StructType):
            nested.append((f"`[{key}]`", f"{key}.", kind))
            lines.append(f"| `{key}` | table | | see `[{key}]` below |")
            continue
        if isinstance(kind, msgspec.inspect.ListType) and isinstance(
            kind.item_type, msgspec.inspect.StructType
        ):
            nested.append((f"`[[{key}]]`", f"{key}[].", kind.item_type))
            lines.append(f"| `{key}` | list of tables | `[]` | see `[[{key}]]` below |")
            continue
        doc = docs.get((info.cls.__name__, field.name), "")
        if not doc:
            for base in info.cls.__mro__[1:]:
                doc = docs.get((base.__name__, field.name), "")
                if doc:
                    break
        meaning = (doc or _MEANINGS.get(key, "")).replace("|", "\\|")
        lines.append(f"| `{key}` | {_type_name(kind)} | {_default(field)} | {meaning} |")
    lines.append("")
    for sub_title, sub_prefix, sub_info in nested:
        lines += _section(sub_title, sub_prefix, sub_info, docs)
    return lines


def render_reference() -> str:
    """Markdown tables of every config key: type, default and meaning."""
    info = msgspec.inspect.type_info(Config)
    assert isinstance(info, msgspec.inspect.StructType)
    return "\n".join(_section("Top level", "", info, _attribute_docs())).rstrip() + "\n"


def splice(document: str) -> str:
    """``document`` with the text between the markers replaced by the reference."""
    start = document.index(BEGIN) + len(BEGIN)
    end = document.index(END)
    return document[:start] + "\n\n" + render_reference() + "\n" + document[end:]
