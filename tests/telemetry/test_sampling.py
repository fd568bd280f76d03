"""Spans are recorded only while something exports them; trace ids flow regardless."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hotdesk_runtime.telemetry import (
    RecordWhileExported,
    extract_context,
    inject_headers,
    publish_span,
)

SAMPLED_PARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def sampled(traceparent: str) -> bool:
    """The W3C ``sampled`` bit of a ``traceparent``'s flags."""
    return bool(int(traceparent.rsplit("-", 1)[1], 16) & 0x01)


def provider() -> tuple[TracerProvider, RecordWhileExported, InMemorySpanExporter]:
    sampler = RecordWhileExported()
    tracer_provider = TracerProvider(sampler=sampler)
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, sampler, exporter


def test_without_an_exporter_spans_are_not_recorded_but_still_carry_a_trace() -> None:
    tracer_provider, _, exporter = provider()
    tracer = tracer_provider.get_tracer("test")
    with (
        tracer.start_as_current_span("INVITE login") as root,
        publish_span(tracer, "FeatureDialled", "hotdesk.edge.dial.HD0001") as headers,
    ):
        pass
    assert not root.is_recording()
    assert exporter.get_finished_spans() == ()
    # The unrecorded span still hands its trace on, marked not sampled.
    trace_hex = format(root.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_hex
    assert not sampled(headers["traceparent"])


def test_once_exporting_every_span_is_recorded() -> None:
    tracer_provider, sampler, exporter = provider()
    tracer = tracer_provider.get_tracer("test")
    sampler.exporting = True
    with tracer.start_as_current_span("INVITE login"):
        headers = inject_headers()
    assert [s.name for s in exporter.get_finished_spans()] == ["INVITE login"]
    assert sampled(headers["traceparent"])


def test_a_trace_sampled_upstream_is_recorded_even_without_an_exporter() -> None:
    # A service that exports nothing must not cut a sampled trace for those after it.
    tracer_provider, _, exporter = provider()
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("process LoggedIn", context=extract_context(SAMPLED_PARENT)):
        headers = inject_headers()
    assert sampled(headers["traceparent"])
    assert headers["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(exporter.get_finished_spans()) == 1
