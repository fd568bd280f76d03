"""Structured logging: one JSON object per line, with the call / desk / trace in scope.

Code states what it is working on with :func:`log_context` (``call_id``, ``desk``,
``user``, …); every record logged inside carries those fields and the current
OpenTelemetry ``trace_id``/``span_id``. Values under keys that name a secret (``pin``,
``password``, ``secret``, ``token``, ``hash``) are replaced by ``"[redacted]"`` so a
careless ``extra=`` can never leak one.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from opentelemetry import trace

_FIELDS: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "hotdesk_log_fields", default=MappingProxyType({})
)

SECRET_WORDS = ("pin", "password", "secret", "token", "hash", "credential", "authorization")
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


def redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` with secret-named values replaced, recursively."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if is_secret_key(key):
            out[key] = REDACTED
        elif isinstance(value, Mapping):
            out[key] = redact(value)
        else:
            out[key] = value
    return out


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
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            entry["service"] = self.service
        entry.update(current_fields())
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(redact(entry), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value …`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = current_fields()
        fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        tail = " ".join(f"{k}={v}" for k, v in redact(fields).items())
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        text = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if tail:
            text += f" {tail}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


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
