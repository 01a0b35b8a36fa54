"""The delivery service's spans (only with tracing on).

* ``process <workflow-events>`` (consumer): one per lifecycle record with
  subscribers, continuing the record's ``ce_traceparent`` (the run that emitted it).
* ``POST`` (client): one per request, a child of that span, with the HTTP client
  semantic conventions; the request carries its ``traceparent`` (and ``tracestate``),
  so the receiver can join the trace. The signature headers are unaffected: Standard
  Webhooks signs the id, the timestamp and the body, never other headers.
* A retry is another ``POST`` span of the same trace, a sibling of the first under
  the same ``process`` span, with a link to the attempt before it. Its ``DeliveryDue``
  record carries both: ``ce_traceparent`` (the delivery's parent) and
  ``hookline_previous_traceparent`` (the attempt before).

The receiver's URL appears without its query and user info (either may hold a token).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from services.delivery._sender import HttpOutcome
from shared.consumer import Record
from shared.entities import Subscription
from shared.messages import LifecycleEvent
from shared.tracing.propagation import (
    CE_TRACEPARENT,
    CE_TRACESTATE,
    consumer_attributes,
    context_from,
    context_from_headers,
    span_context_of,
    traceparent,
    tracer,
)

if TYPE_CHECKING:
    from services.delivery._codec import Due

PREVIOUS_HEADER = "hookline_previous_traceparent"


@dataclass(frozen=True, slots=True)
class DeliveryTrace:
    """Where a delivery's attempts belong: the parent span's context, and the attempt
    before (absent on the first)."""

    parent: str
    state: str | None = None
    previous: str | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        out = [(CE_TRACEPARENT, self.parent.encode())]
        if self.state:
            out.append((CE_TRACESTATE, self.state.encode()))
        if self.previous:
            out.append((PREVIOUS_HEADER, self.previous.encode()))
        return out


@dataclass(frozen=True, slots=True)
class TracedOutcome(HttpOutcome):
    """An attempt's outcome with its span's ``traceparent`` (the next attempt links it)."""

    traceparent: str | None = None


def intake_trace(
    record: Record, group: str, event_id: str, data: LifecycleEvent, subscriptions: int
) -> DeliveryTrace | None:
    """The consumer span of one lifecycle record; its deliveries' attempts are children."""
    attributes = consumer_attributes(
        record.topic, record.partition, record.offset, group, record.key
    )
    attributes.update(
        {
            "messaging.message.id": event_id,
            "hookline.event.type": data.ce_type,
            "hookline.run.id": data.run_id,
            "hookline.workflow.id": data.workflow_id,
            "hookline.subscriptions": subscriptions,
        }
    )
    if data.trigger is not None:
        attributes["hookline.webhook.id"] = data.trigger.webhook_id
    span = tracer().start_span(
        f"process {record.topic}",
        context=context_from_headers(record.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    )
    span.end()
    found = span.get_span_context()
    if not found.is_valid:
        return None
    state = found.trace_state.to_header() if found.trace_state else None
    return DeliveryTrace(traceparent(found), state or None)


def traced_dues(
    dues: list[Due], record: Record, group: str, event_id: str, data: LifecycleEvent
) -> list[Due]:
    """The record's deliveries, their attempts to be children of its consumer span."""
    trace = intake_trace(record, group, event_id, data, len(dues))
    return dues if trace is None else [replace(due, trace=trace) for due in dues]


def resumed(due: Due, headers: Sequence[tuple[str, bytes | None]] | None) -> Due:
    """A due delivery read from a retry tier, with the trace its record carries."""
    found: dict[str, str] = {}
    for name, value in headers or ():
        if value is not None and name in (CE_TRACEPARENT, CE_TRACESTATE, PREVIOUS_HEADER):
            found[name] = value.decode("latin-1")
    parent = found.get(CE_TRACEPARENT)
    if not parent:
        return due
    trace = DeliveryTrace(parent, found.get(CE_TRACESTATE), found.get(PREVIOUS_HEADER))
    return replace(due, trace=trace)


def _url(url: str) -> tuple[str, str | None, int | None]:
    """The URL without query, fragment and user info; its host and port."""
    parts = urlsplit(url)
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    shown = f"[{host}]" if host and ":" in host else (host or "")
    if parts.port:
        shown += f":{parts.port}"
    return f"{parts.scheme}://{shown}{parts.path}", host, port


async def traced_attempt(
    request: Callable[[Due, Subscription], Awaitable[HttpOutcome]], due: Due, sub: Subscription
) -> HttpOutcome:
    """One request inside its client span; the outcome says the span's ``traceparent``."""
    trace: DeliveryTrace | None = due.trace
    parent = context_from(trace.parent, trace.state) if trace else context_from(None)
    before = span_context_of(trace.previous) if trace and trace.previous else None
    full, host, port = _url(sub.url)
    attributes: dict[str, Any] = {
        "http.request.method": "POST",
        "url.full": full,
        "hookline.subscription.id": sub.id,
        "hookline.delivery.id": due.delivery_id,
        "hookline.delivery.message_id": due.message_id,
        "hookline.delivery.attempt": due.attempt,
        "hookline.event.type": due.event_type,
    }
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    if due.attempt > 1:
        attributes["http.request.resend_count"] = due.attempt - 1
    if due.workflow_id:
        attributes["hookline.workflow.id"] = due.workflow_id
    with tracer().start_as_current_span(
        "POST",
        context=parent,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        links=[Link(before, {"hookline.link": "previous_attempt"})] if before else None,
    ) as span:
        outcome = await request(due, sub)
        if outcome.status_code is not None:
            span.set_attribute("http.response.status_code", outcome.status_code)
        if not outcome.succeeded:
            span.set_attribute("error.type", outcome.error or str(outcome.status_code))
            span.set_status(Status(StatusCode.ERROR))
        found = span.get_span_context()
    return TracedOutcome(
        outcome.status_code,
        outcome.error,
        outcome.latency_ms,
        outcome.excerpt,
        outcome.retry_after,
        traceparent(found) if found.is_valid else None,
    )


def next_attempt(following: Due, result: HttpOutcome | None) -> Due:
    """The next attempt's due delivery links the attempt just made (same parent)."""
    made = result.traceparent if isinstance(result, TracedOutcome) else None
    if made is None:
        return following
    trace: DeliveryTrace | None = following.trace
    if trace is None:
        # The attempt was a root (a redelivery with no context): its retries join it.
        return replace(following, trace=DeliveryTrace(made, None, made))
    return replace(following, trace=replace(trace, previous=made))
