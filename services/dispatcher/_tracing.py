"""The dispatcher's and the local engine's spans (only with tracing on).

* ``process <inbound>`` (consumer): one per inbound record, continuing the ingress'
  ``ce_traceparent``; one ``send <workflow-commands>`` (producer) child per run it
  requests, whose context the command and the queued ``status.changed`` carry.
* ``run <workflow id>`` (consumer): the local engine's run of one command, continuing
  the command's ``ce_traceparent``; every lifecycle event of the run carries its
  context; one ``node <node id>`` child per node.

A batch whose transaction aborts is processed again: its spans then appear twice, as
the work did happen twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, get_current_span

from shared.consumer import Record
from shared.entities import Node
from shared.errors import NodeFailed
from shared.messages import RunRequested, WebhookReceived
from shared.tracing.propagation import (
    consumer_attributes,
    context_from_headers,
    extensions_of,
    tracer,
)

if TYPE_CHECKING:
    from ._nodes import NodeRunner

R = TypeVar("R")


async def traced_dispatch(
    dispatch: Callable[[Any, int, Record], Awaitable[None]],
    outbox: Any,
    record: Record,
    group: str,
) -> None:
    """``dispatch`` of one inbound record inside its consumer span."""
    with tracer().start_as_current_span(
        f"process {record.topic}",
        context=context_from_headers(record.headers),
        kind=SpanKind.CONSUMER,
        attributes=consumer_attributes(
            record.topic, record.partition, record.offset, group, record.key
        ),
    ):
        await dispatch(outbox, record.partition, record)


def annotate_inbound(event: WebhookReceived) -> None:
    get_current_span().set_attributes(
        {
            "hookline.webhook.id": event.webhook_id,
            "hookline.provider": event.provider,
            "hookline.event.type": event.event_type,
            "hookline.provider_event_id": event.provider_event_id,
        }
    )


def start_run_request(topic: str, run_id: str, workflow_id: str) -> Span:
    """The producer span of one requested run (child of the record's span); the caller
    writes ``extensions_of`` it on the command and the queued event, then ends it."""
    return tracer().start_span(
        f"send {topic}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": run_id,
            "hookline.run.id": run_id,
            "hookline.workflow.id": workflow_id,
        },
    )


def run_extensions(span: Span) -> dict[str, str]:
    return extensions_of(span.get_span_context())


async def traced_run(
    execute: Callable[[RunRequested], Awaitable[R]],
    command: RunRequested,
    record: Record,
    group: str,
) -> R:
    """The local engine's ``execute`` of one command inside its run span."""
    attributes = consumer_attributes(record.topic, record.partition, record.offset, group)
    attributes.update(
        {
            "hookline.run.id": command.run_id,
            "hookline.workflow.id": command.workflow_id,
            "hookline.webhook.id": command.webhook_id,
            "hookline.event.type": command.event_type,
        }
    )
    with tracer().start_as_current_span(
        f"run {command.workflow_id}",
        context=context_from_headers(record.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ):
        return await execute(command)


async def traced_node(runner: NodeRunner, node: Node, command: RunRequested) -> Any:
    """One node of a run inside its span; a failing node marks it as an error."""
    with tracer().start_as_current_span(
        f"node {node.id}",
        kind=SpanKind.INTERNAL,
        attributes={
            "hookline.run.id": command.run_id,
            "hookline.workflow.id": command.workflow_id,
            "hookline.node.id": node.id,
            "hookline.node.kind": node.kind,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            return await runner.run(node, command)
        except NodeFailed as exc:
            span.set_attribute("error.type", exc.code)
            span.set_status(Status(StatusCode.ERROR, exc.code))
            raise
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR))
            raise
