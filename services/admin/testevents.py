"""``POST /v1/subscriptions/{id}/test``: a test event for one subscription only.

Publishing a lifecycle event to ``workflow-events`` would reach every subscription
that wants it; a test must reach one. So the event goes, as a redelivery does, to the
delivery service's first retry tier as a :class:`~shared.messages.DeliveryDue` for
that subscription alone: signed and sent like any delivery, with its attempts in the
delivery log (and so in ``/v1/deliveries``). The event is the first type the
subscription wants, for workflow ``hookline.test`` (or its first workflow) and a run
id ``test_<ulid>``; its source is a position of its own (topic ``<prefix>test``,
offset the request's time in microseconds), from which its ids derive as usual, so
every test is a new delivery with a new ``webhook-id``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from ulid import ULID

from services.delivery import delivery_id, message_id, render_body
from shared.entities import Subscription, event_pattern_matches
from shared.errors import NotRedeliverable
from shared.messages import (
    DeliveryDue,
    ErrorInfo,
    ErrorOccurred,
    LifecycleEvent,
    NodeCompleted,
    SourceRecord,
    StatusChanged,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)

from .context import AdminContext
from .deliveries import send_dues
from .opsmodels import RedeliveryOut
from .viewdb import to_us
from .web import model_response, not_found

log = logging.getLogger("hookline.admin")

TEST_WORKFLOW = "hookline.test"


def sample_event(sub: Subscription, now: datetime) -> LifecycleEvent | None:
    """The test event: the first lifecycle type the subscription's filters take."""
    workflow = sub.workflow_ids[0] if sub.workflow_ids else TEST_WORKFLOW
    common: dict[str, Any] = {
        "workflow_id": workflow,
        "run_id": f"test_{str(ULID()).lower()}",
        "occurred_at": now,
    }
    error = ErrorInfo(code="hookline_test", message="a test event sent from the admin API")
    candidates: list[LifecycleEvent] = [
        WorkflowCompleted(**common, output={"test": True}),
        StatusChanged(**common, to="succeeded"),
        WorkflowStarted(**common),
        NodeCompleted(**common, node_id="hookline-test"),
        WorkflowFailed(**common, error=error),
        ErrorOccurred(**common, error=error),
    ]
    for event in candidates:
        if any(event_pattern_matches(p, event.ce_type) for p in sub.events):
            return event
    return None


class TestEventHandlers:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def send(self, request: Request) -> Response:
        sub_id: str = request.path_params["id"]
        sub = self.ctx.view.subscription(sub_id)
        if sub is None:
            raise not_found(f"subscription {sub_id!r}")
        now = datetime.now(UTC)
        event = sample_event(sub, now)
        if event is None:
            raise NotRedeliverable("the subscription wants no lifecycle event type")
        source = SourceRecord(
            topic=f"{self.ctx.settings.topic_prefix}test", partition=0, offset=to_us(now)
        )
        due = DeliveryDue(
            delivery_id=delivery_id(source, sub.id),
            message_id=message_id(source, sub.id),
            subscription_id=sub.id,
            event_type=event.ce_type,
            workflow_id=event.workflow_id,
            source=source,
            body=render_body(event),
            attempt=1,
            due_at=now,
            first_attempted_at=now,
        )
        await send_dues(self.ctx, [due])
        log.info("test event sent", extra={"subscription_id": sub.id, "type": event.ce_type})
        out = RedeliveryOut(
            delivery_id=due.delivery_id,
            message_id=due.message_id,
            subscription_id=sub.id,
            due_at=now,
        )
        return model_response(out, 202)
