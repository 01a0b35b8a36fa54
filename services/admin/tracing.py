"""The admin API's span for ``POST /v1/events`` (only with tracing on).

The admin API is an internal publisher: its callers are authenticated services of the
platform, so a ``traceparent`` they send is continued. The published lifecycle event
carries the producer span's context as ``ce_traceparent``, which delivery continues.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.trace import SpanKind

from shared.messages import LifecycleEvent
from shared.tracing.propagation import context_from, extensions_of, tracer


def publish_trace(headers: Mapping[str, str], topic: str, data: LifecycleEvent) -> dict[str, str]:
    """A producer span for one published event; its extension attributes for the record."""
    span = tracer().start_span(
        f"send {topic}",
        context=context_from(headers.get("traceparent"), headers.get("tracestate")),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": data.run_id,
            "hookline.event.type": data.ce_type,
            "hookline.run.id": data.run_id,
            "hookline.workflow.id": data.workflow_id,
        },
    )
    span.end()
    return extensions_of(span.get_span_context())
