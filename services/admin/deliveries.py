"""The delivery log over HTTP, redelivery, recovery, and publishing lifecycle events.

Redelivery contract with the delivery service: a :class:`~shared.messages.DeliveryDue`
with the same ``delivery_id`` and ``message_id`` (the ``webhook-id``), the recorded
body, ``attempt=1`` and ``due_at=now`` goes to ``topics.retry_tier(2)`` keyed by the
subscription id; the delivery service attempts any due record it reads there.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError
from starlette.requests import Request
from starlette.responses import Response

from shared.cloudevents import encode, new_event_id
from shared.errors import NotRedeliverable, SubscriptionGone
from shared.messages import DeliveryDue

from .context import SOURCE, AdminContext, unavailable
from .delivery_log import DeliveryRecord
from .models import (
    AttemptOut,
    DeliveryDetail,
    DeliveryList,
    DeliveryOut,
    DeliveryQuery,
    PublishedOut,
    PublishEventIn,
    RecoverIn,
    RecoverOut,
    RedeliveryOut,
)
from .web import (
    decode_cursor,
    encode_cursor,
    invalid,
    model_response,
    not_found,
    parse,
    parse_query,
    read_json,
)

log = logging.getLogger("hookline.admin")

RECOVERABLE = ("failed", "exhausted")


def summary(record: DeliveryRecord) -> dict[str, Any]:
    latest = record.latest
    return {
        "id": record.delivery_id,
        "message_id": latest.message_id,
        "subscription_id": latest.subscription_id,
        "event_type": latest.event_type,
        "workflow_id": latest.workflow_id,
        "outcome": latest.outcome,
        "attempt_count": len(record.attempts),
        "last_attempt_at": latest.attempted_at,
        "status_code": latest.status_code,
        "next_attempt_at": latest.next_attempt_at,
    }


def due_for(record: DeliveryRecord, now: datetime) -> DeliveryDue | None:
    """The record that asks the delivery service to send ``record`` again, when it can."""
    body, source = record.body, record.source
    if body is None or source is None:
        return None
    latest = record.latest
    return DeliveryDue(
        delivery_id=record.delivery_id,
        message_id=latest.message_id,
        subscription_id=latest.subscription_id,
        event_type=latest.event_type,
        workflow_id=latest.workflow_id,
        source=source,
        body=body,
        attempt=1,
        due_at=now,
        first_attempted_at=now,
    )


class DeliveryHandlers:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def list_all(self, request: Request) -> Response:
        query = parse_query(request, DeliveryQuery)
        before: tuple[datetime, str] | None = None
        if query.cursor is not None:
            before = _order_cursor(decode_cursor(query.cursor))
        found = self.ctx.delivery_log.query(
            subscription_id=query.subscription_id,
            event_type=query.event_type,
            outcome=query.outcome,
            before=before,
            limit=query.limit + 1,
        )
        page = found[: query.limit]
        next_cursor = None
        if len(found) > query.limit:
            at, last_id = page[-1].order_key
            next_cursor = encode_cursor([at.isoformat(), last_id])
        listing = DeliveryList(
            items=[DeliveryOut.model_validate(summary(d)) for d in page], next_cursor=next_cursor
        )
        return model_response(listing)

    async def get(self, request: Request) -> Response:
        record = self._require(request.path_params["id"])
        detail = DeliveryDetail.model_validate(
            {
                **summary(record),
                "source": record.source,
                "body": record.body,
                "attempts": [
                    AttemptOut.model_validate(a.model_dump(include=set(AttemptOut.model_fields)))
                    for a in record.attempts
                ],
            }
        )
        return model_response(detail)

    async def redeliver(self, request: Request) -> Response:
        record = self._require(request.path_params["id"])
        if self.ctx.view.subscription(record.subscription_id) is None:
            raise SubscriptionGone(f"subscription {record.subscription_id!r} no longer exists")
        due = due_for(record, datetime.now(UTC))
        if due is None:
            raise NotRedeliverable("the log holds no body or source record for it")
        await self._send([due])
        log.info(
            "redelivery requested",
            extra={"delivery_id": due.delivery_id, "subscription_id": due.subscription_id},
        )
        out = RedeliveryOut(
            delivery_id=due.delivery_id,
            message_id=due.message_id,
            subscription_id=due.subscription_id,
            due_at=due.due_at,
        )
        return model_response(out, 202)

    async def recover(self, request: Request) -> Response:
        subscription_id: str = request.path_params["id"]
        if self.ctx.view.subscription(subscription_id) is None:
            raise not_found(f"subscription {subscription_id!r}")
        body = parse(RecoverIn, await read_json(request), "body")
        now = datetime.now(UTC)
        dues = []
        for record in self.ctx.delivery_log.query(subscription_id=subscription_id):
            if record.last_attempt_at >= body.since and record.outcome in RECOVERABLE:
                due = due_for(record, now)
                if due is not None:
                    dues.append(due)
        await self._send(dues)
        log.info(
            "recovery requested",
            extra={"subscription_id": subscription_id, "deliveries": len(dues)},
        )
        out = RecoverOut(
            subscription_id=subscription_id,
            since=body.since,
            redelivered=len(dues),
            delivery_ids=[d.delivery_id for d in dues],
        )
        return model_response(out, 202)

    async def publish_event(self, request: Request) -> Response:
        event = parse(PublishEventIn, await read_json(request), "body").root
        data = event.data
        event_id = event.id or new_event_id()
        topic = self.ctx.topics.workflow_events
        record = encode(data, key=data.run_id, source=event.source or SOURCE, event_id=event_id)
        meta = await self.ctx.publish(topic, record)
        log.info("event published", extra={"type": event.type, "run_id": data.run_id})
        out = PublishedOut(
            id=event_id,
            type=event.type,
            run_id=data.run_id,
            topic=topic,
            partition=meta.partition,
            offset=meta.offset,
        )
        return model_response(out, 202)

    # -- helpers --------------------------------------------------------------------------

    def _require(self, delivery_id: str) -> DeliveryRecord:
        record = self.ctx.delivery_log.get(delivery_id)
        if record is None:
            raise not_found(f"delivery {delivery_id!r}")
        return record

    async def _send(self, dues: list[DeliveryDue]) -> None:
        """All of ``dues`` to the first retry tier, each acknowledged; 503 otherwise."""
        if not dues:
            return
        topic = self.ctx.topics.retry_tier(2)
        producer = self.ctx.producer
        try:
            async with asyncio.timeout(self.ctx.settings.publish_timeout):
                futures = []
                for due in dues:
                    rec = encode(due, key=due.subscription_id, source=SOURCE)
                    futures.append(
                        await producer.send(topic, rec.value, key=rec.key, headers=rec.headers)
                    )
                await asyncio.gather(*futures)
        except (TimeoutError, KafkaError) as exc:
            raise unavailable("Kafka did not acknowledge the redelivery in time") from exc


def _order_cursor(value: Any) -> tuple[datetime, str]:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        try:
            at = datetime.fromisoformat(value[0])
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            return (at, value[1])
    raise invalid(["query", "cursor"], "not a cursor this API gave")
