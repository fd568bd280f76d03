"""Structured logs carry the call, desk and trace; secrets never reach them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace

from hotdesk_runtime.logging import REDACTED, log_context, register_secret, setup_logging
from hotdesk_runtime.telemetry import (
    current_trace_id,
    extract_context,
    inject_headers,
    service_name,
    setup_telemetry,
)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    ours = logging.getLogger("hotdesk")
    saved = (list(root.handlers), root.level, ours.level)
    # Whatever ran before in this process (a benchmark quietens "hotdesk") must not
    # decide what these tests see: setup_logging's level is the one under test.
    ours.setLevel(logging.NOTSET)
    setup_logging("ivr", level="DEBUG", fmt="json", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_context_fields_appear_on_every_record_inside(captured: io.StringIO) -> None:
    log = logging.getLogger("hotdesk.test")
    with log_context(call_id="abc@host", desk="HD0001"):
        log.info("pin prompt played")
        with log_context(user="100"):
            log.info("login")
    log.info("outside")
    inside, nested, outside = records(captured)
    assert inside["call_id"] == "abc@host"
    assert inside["desk"] == "HD0001"
    assert inside["service"] == "ivr"
    assert nested["user"] == "100"
    assert nested["call_id"] == "abc@host"
    assert "call_id" not in outside


def test_secrets_are_redacted_even_when_passed_by_mistake(captured: io.StringIO) -> None:
    logging.getLogger("hotdesk.test").info(
        "login attempt",
        extra={"pin": "1234", "sip_password": "hunter2", "nested": {"token": "t0k"}, "n": 3},
    )
    [record] = records(captured)
    assert record["pin"] == REDACTED
    assert record["sip_password"] == REDACTED
    assert record["nested"] == {"token": REDACTED}
    assert record["n"] == 3
    text = captured.getvalue()
    assert "1234" not in text
    assert "hunter2" not in text


def test_secrets_nested_in_lists_and_dicts_are_redacted(captured: io.StringIO) -> None:
    logging.getLogger("hotdesk.test").info(
        "directory loaded",
        extra={
            "desks": [{"id": "HD0001", "sip_password": "s3cretpw"}, ("x", {"pin": "4321"})],
            "plain": ["a", "b"],
        },
    )
    text = captured.getvalue()
    assert "s3cretpw" not in text
    assert "4321" not in text
    [record] = records(captured)
    assert record["desks"][0] == {"id": "HD0001", "sip_password": REDACTED}  # type: ignore[index]
    assert record["plain"] == ["a", "b"]


def test_registered_secret_values_are_scrubbed_from_exception_text(
    captured: io.StringIO,
) -> None:
    register_secret("nats-token-abcdef")
    try:
        raise RuntimeError("connect nats://nats-token-abcdef@127.0.0.1:4222 failed")
    except RuntimeError:
        logging.getLogger("hotdesk.test").exception("connect failed for nats-token-abcdef")
    text = captured.getvalue()
    assert "nats-token-abcdef" not in text
    [record] = records(captured)
    assert REDACTED in str(record["exception"])
    assert REDACTED in str(record["message"])


def test_values_under_secret_keys_are_scrubbed_from_exception_text(
    captured: io.StringIO,
) -> None:
    try:
        raise ValueError("bad PIN 987654")
    except ValueError:
        logging.getLogger("hotdesk.test").exception("login failed", extra={"pin": "987654"})
    assert "987654" not in captured.getvalue()


def test_trace_context_round_trips_through_message_headers(captured: io.StringIO) -> None:
    telemetry = setup_telemetry("ivr")
    assert service_name("ivr") == "hotdesk-ivr"
    tracer = telemetry.tracer("test")
    with tracer.start_as_current_span("publish") as span:
        headers = inject_headers({"Nats-Msg-Id": "x"})
        logging.getLogger("hotdesk.test").info("published")
        sent_trace = span.get_span_context().trace_id
        assert current_trace_id() == format(sent_trace, "032x")
    assert headers["Nats-Msg-Id"] == "x"
    assert headers["traceparent"].startswith("00-")
    received = trace.get_current_span(extract_context(headers)).get_span_context()
    assert received.trace_id == sent_trace
    [record] = [r for r in records(captured) if r["message"] == "published"]
    assert record["trace_id"] == format(sent_trace, "032x")


def test_extracting_from_no_headers_gives_no_trace() -> None:
    span = trace.get_current_span(extract_context(None)).get_span_context()
    assert not span.is_valid
