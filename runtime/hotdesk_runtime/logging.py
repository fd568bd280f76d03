"""Structured logging: one JSON object per line, with the call / desk / trace in scope.

Code states what it is working on with :func:`log_context` (``call_id``, ``desk``,
``user``, …); every record logged inside carries those fields and the current
OpenTelemetry ``trace_id``/``span_id``. Values under keys that name a secret (``pin``,
``password``, ``secret``, ``token``, ``hash``) are replaced by ``"[redacted]"`` so a
careless ``extra=`` can never leak one, however deeply nested in dicts and lists. Secret
values a process knows (its NATS token, the SIP passwords it loaded) are registered with
:func:`register_secret` and scrubbed from messages and exception text, which carry no keys.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from opentelemetry import trace

_FIELDS: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "hotdesk_log_fields", default=MappingProxyType({})
)

SECRET_WORDS = (
    "pin",
    "password",
    "secret",
    "pepper",
    "token",
    "hash",
    "credential",
    "authorization",
)
REDACTED = "[redacted]"

# Attributes every LogRecord has: anything else came from ``extra=``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def is_secret_key(key: str) -> bool:
    """Whether a field named ``key`` may hold a secret (so it is never logged)."""
    lowered = key.lower()
    if lowered in ("pin_tries_per_call", "pin_max_failures"):
        return False
    return any(word in lowered for word in SECRET_WORDS)


# Secret values known to this process; shorter ones would scrub ordinary words.
_KNOWN_SECRETS: set[str] = set()
_MIN_SECRET_LEN = 4


def register_secret(value: str) -> None:
    """Remember ``value`` as a secret so it is scrubbed from any logged text."""
    if len(value) >= _MIN_SECRET_LEN:
        _KNOWN_SECRETS.add(value)


def scrub(text: str, extra_secrets: Sequence[str] = ()) -> str:
    """``text`` with every registered secret (and ``extra_secrets``) replaced."""
    secrets = _KNOWN_SECRETS.union(s for s in extra_secrets if len(s) >= _MIN_SECRET_LEN)
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` with secret-named values replaced, recursively.

    Recurses into nested mappings and sequences; strings are scrubbed of registered
    secret values.
    """
    out: dict[str, Any] = {}
    for key, value in fields.items():
        out[str(key)] = REDACTED if is_secret_key(str(key)) else _redact_value(value)
    return out


def _secret_values(fields: Mapping[str, Any]) -> list[str]:
    """String values held under secret-named keys, at any depth (to scrub from text)."""
    found: list[str] = []

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, secret or is_secret_key(str(key)))
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item, secret)
        elif secret and isinstance(value, str | int) and not isinstance(value, bool):
            found.append(str(value))

    walk(fields, False)
    return found


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (e.g. ``call_id=…, desk=…``) to every record logged inside."""
    merged = {**_FIELDS.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _FIELDS.set(merged)
    try:
        yield
    finally:
        _FIELDS.reset(token)


def current_fields() -> dict[str, Any]:
    """The context fields in scope, plus the current trace and span ids."""
    fields = dict(_FIELDS.get())
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields["trace_id"] = format(span.trace_id, "032x")
        fields["span_id"] = format(span.span_id, "016x")
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, service, fields."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        secrets = _secret_values(extra)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage(), secrets),
        }
        if self.service:
            entry["service"] = self.service
        entry.update(current_fields())
        entry.update(extra)
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info), secrets)
        return json.dumps(redact(entry), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value …`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = current_fields()
        fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        secrets = _secret_values(fields)
        tail = " ".join(f"{k}={v}" for k, v in redact(fields).items())
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        text = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if tail:
            text += f" {tail}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return scrub(text, secrets)


def setup_logging(
    service: str = "",
    *,
    level: str = "INFO",
    fmt: Literal["json", "text"] = "json",
    stream: Any = None,
) -> None:
    """Route every logger to one handler on stderr in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
