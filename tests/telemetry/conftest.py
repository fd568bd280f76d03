"""An in-memory exporter on the process's tracer provider, for tests that run the
services in this process and look at the spans they made."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hotdesk_runtime.telemetry import setup_telemetry


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Every span finished in this process during the test (recorded from now on)."""
    telemetry = setup_telemetry("tests")
    assert trace.get_tracer_provider() is telemetry.tracer_provider
    exporter = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # the processor stays on the provider, exporting nothing
