"""Trace context in and out of Kafka records and CloudEvents, and into log lines."""

from __future__ import annotations

import io
import logging

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import get_current_span

from shared import tracing
from shared.cloudevents import decode, encode
from shared.logging import JsonFormatter
from shared.messages import WorkflowStarted, utcnow
from shared.tracing.propagation import (
    context_from,
    context_from_headers,
    current_extensions,
    tracer,
)

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_traceparent_that_does_not_parse_starts_a_new_trace():
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", VALID[:-3]):
        assert not get_current_span(context_from(bad)).get_span_context().is_valid
    found = get_current_span(context_from(VALID, "vendor=x")).get_span_context()
    assert f"{found.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert found.trace_state.to_header() == "vendor=x"


def test_the_cloudevents_extension_carries_a_span_across_kafka(spans: InMemorySpanExporter):
    event = WorkflowStarted(workflow_id="wf", run_id="run-1", occurred_at=utcnow())
    with tracer().start_as_current_span("emit") as span:
        record = encode(event, key="run-1", source="/t", extensions=current_extensions())
    headers = dict(record.headers)
    expected = span.get_span_context()
    assert (
        headers["ce_traceparent"]
        .decode()
        .startswith(f"00-{expected.trace_id:032x}-{expected.span_id:016x}-")
    )
    # A consumer sees it as the extension attribute, and continues the trace from it.
    decoded = decode(record.headers, record.value, WorkflowStarted)
    assert decoded.extensions["traceparent"] == headers["ce_traceparent"].decode()
    parent = get_current_span(context_from_headers(record.headers)).get_span_context()
    assert (parent.trace_id, parent.span_id) == (expected.trace_id, expected.span_id)


def test_no_active_span_means_no_extension(spans: InMemorySpanExporter):
    assert current_extensions() is None


def _line(formatter: JsonFormatter) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.tracing.lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("a line")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_log_lines_name_the_active_span(spans: InMemorySpanExporter):
    formatter = JsonFormatter("test")
    assert "trace_id" not in _line(formatter)
    with tracer().start_as_current_span("work") as span:
        line = _line(formatter)
    found = span.get_span_context()
    assert f'"trace_id":"{found.trace_id:032x}"' in line
    assert f'"span_id":"{found.span_id:016x}"' in line


def test_log_lines_carry_no_trace_fields_with_tracing_off():
    assert tracing.enabled is False
    assert "trace_id" not in _line(JsonFormatter("test"))
