"""Trace context in and out of Kafka headers, HTTP headers and CloudEvents extensions.

Through Kafka the context travels as the CloudEvents distributed-tracing extension in
binary mode: ``ce_traceparent`` and ``ce_tracestate`` headers holding W3C Trace Context
values. Everything here is called only behind ``if tracing.enabled``.

Attribute names follow the OpenTelemetry semantic conventions (HTTP, messaging) and
hookline's own ``hookline.*`` names, listed in ``docs/tracing.md``. No secret and no
body ever becomes an attribute.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import shared.tracing as tracing

CE_TRACEPARENT = "ce_traceparent"
CE_TRACESTATE = "ce_tracestate"
_W3C = TraceContextTextMapPropagator()

__all__ = ["Link", "Span", "SpanContext", "SpanKind"]


def tracer() -> Tracer:
    found = tracing.tracer
    if found is None:
        raise RuntimeError("tracing is not configured")
    return found


# -- in ------------------------------------------------------------------------------------


def context_from(traceparent: str | None, tracestate: str | None = None) -> Context:
    """The context a W3C ``traceparent`` names; an empty one (a new root) when it is
    missing or does not parse. Never the caller's current context."""
    if not traceparent:
        return Context()
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _W3C.extract(carrier, context=Context())


def context_from_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Context:
    """The context of a Kafka record's ``ce_traceparent``/``ce_tracestate`` headers."""
    parent: str | None = None
    state: str | None = None
    for name, value in headers or ():
        if value is None:
            continue
        if name == CE_TRACEPARENT:
            parent = value.decode("latin-1")
        elif name == CE_TRACESTATE:
            state = value.decode("latin-1")
    return context_from(parent, state)


def span_context_of(traceparent: str | None) -> SpanContext | None:
    """The span a ``traceparent`` names (a link's target); None when it does not parse."""
    found = trace.get_current_span(context_from(traceparent)).get_span_context()
    return found if found.is_valid else None


# -- out -----------------------------------------------------------------------------------


def traceparent(span_context: SpanContext) -> str:
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def extensions_of(span_context: SpanContext) -> dict[str, str]:
    """The CloudEvents ``traceparent``/``tracestate`` extension attributes of a span."""
    out = {"traceparent": traceparent(span_context)}
    state = span_context.trace_state.to_header() if span_context.trace_state else ""
    if state:
        out["tracestate"] = state
    return out


def current_extensions() -> dict[str, str] | None:
    """The extension attributes of the active span, for ``cloudevents.encode``; None when
    no span is active (nothing to continue)."""
    found = trace.get_current_span().get_span_context()
    return extensions_of(found) if found.is_valid else None


def kafka_headers(span_context: SpanContext) -> list[tuple[str, bytes]]:
    """``ce_traceparent`` (and ``ce_tracestate``) headers of a span, for a Kafka record."""
    return [(f"ce_{k}", v.encode()) for k, v in extensions_of(span_context).items()]


def current_kafka_headers() -> list[tuple[str, bytes]]:
    found = trace.get_current_span().get_span_context()
    return kafka_headers(found) if found.is_valid else []


def current_ids() -> tuple[str, str] | None:
    found = trace.get_current_span().get_span_context()
    if not found.is_valid:
        return None
    return f"{found.trace_id:032x}", f"{found.span_id:016x}"


# -- attributes ----------------------------------------------------------------------------


def consumer_attributes(
    topic: str, partition: int, offset: int, group: str | None, key: bytes | None = None
) -> dict[str, Any]:
    """Messaging semantic conventions for one consumed Kafka record."""
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.message.offset": offset,
    }
    if group:
        attributes["messaging.consumer.group.name"] = group
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode("utf-8", errors="replace")
    return attributes


def set_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    """Set the attributes whose value is known (None is left out)."""
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def current_http_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the active span, for an outbound request."""
    found = trace.get_current_span().get_span_context()
    return extensions_of(found) if found.is_valid else {}
