"""A ledger append made inside a trace hands it on in the stored message's headers; an
append outside any trace starts none."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hotdesk_contracts import subjects
from hotdesk_contracts.events import Cause, LoggedIn
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.telemetry import extract_context


def logged_in(desk: str, event_id: str) -> LoggedIn:
    return LoggedIn(
        event_id=event_id,
        at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        cause=Cause(actor="user:100"),
        correlation_id=event_id,
        desk=desk,
        user="100",
    )


async def test_an_append_inside_a_trace_stores_its_publish_spans_context(
    js: JetStreamContext, exported: InMemorySpanExporter
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    subject = subjects.desk_ledger("HD0001")
    with trace.get_tracer("test").start_as_current_span("ivr login") as outer:
        await store.append(subject, [logged_in("HD0001", "t1")], 0)
    raw = await js.get_last_msg(store.stream, subject)
    assert raw.headers is not None
    carried = trace.get_current_span(extract_context(raw.headers)).get_span_context()
    [publish] = [s for s in exported.get_finished_spans() if s.name == "publish LoggedIn"]
    assert publish.context is not None
    assert publish.parent is not None
    # The message names the publish span, a child of the caller's span.
    assert (carried.trace_id, carried.span_id) == (
        outer.get_span_context().trace_id,
        publish.context.span_id,
    )
    assert publish.parent.span_id == outer.get_span_context().span_id
    attributes = publish.attributes or {}
    assert attributes["messaging.destination.name"] == subject
    assert attributes["messaging.message.id"] == "t1"
    assert attributes["hotdesk.ledger.seq"] == raw.seq


async def test_an_append_outside_any_trace_carries_no_trace_and_makes_no_span(
    js: JetStreamContext, exported: InMemorySpanExporter
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    subject = subjects.desk_ledger("HD0002")
    await store.append(subject, [logged_in("HD0002", "t2")], 0)
    raw = await js.get_last_msg(store.stream, subject)
    assert "traceparent" not in (raw.headers or {})
    assert [s.name for s in exported.get_finished_spans()] == []
