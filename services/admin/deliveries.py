"""The deliveries over HTTP (from the admin view), redelivery, and publishing lifecycle events.

Redelivery contract with the delivery service: a :class:`~shared.messages.DeliveryDue`
with the same ``delivery_id`` and ``message_id`` (the ``webhook-id``), the recorded
body, ``attempt=1`` and ``due_at=now`` goes to ``topics.retry_tier(2)`` keyed by the
subscription id; the delivery service attempts any due record it reads there.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError
from starlette.requests import Request
from starlette.responses import Response

from shared import tracing
from shared.cloudevents import encode, new_event_id
from shared.errors import NotRedeliverable, SubscriptionGone
from shared.messages import DeliveryDue, SourceRecord

from .context import SOURCE, AdminContext, unavailable
from .listing import Page, dict_rows
from .opsmodels import DeliveryDetail, DeliveryList, DeliveryOut, DeliveryQuery, RedeliveryOut
from .publish_models import PublishedOut, PublishEventIn
from .tracing import publish_trace
from .viewdb import from_us
from .web import model_response, not_found, parse, parse_query, read_json

log = logging.getLogger("hookline.admin")

SUMMARY = (
    "delivery_id, message_id, subscription_id, event_type, workflow_id, run_id, outcome, "
    "attempt_count, first_attempt_at, last_attempt_at, status_code, next_attempt_at"
)
ATTEMPTS = (
    "SELECT delivery_id, attempt, outcome, status_code, error, latency_ms, response_excerpt, "
    "next_attempt_at, attempted_at, url FROM attempts WHERE delivery_id IN ({marks}) "
    "ORDER BY rowid"
)


def _summary(row: Any, attempts: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {
        "id": row["delivery_id"],
        "message_id": row["message_id"],
        "subscription_id": row["subscription_id"],
        "event_type": row["event_type"],
        "workflow_id": row["workflow_id"],
        "run_id": row["run_id"],
        "outcome": row["outcome"],
        "attempt_count": row["attempt_count"],
        "first_attempt_at": from_us(row["first_attempt_at"]),
        "last_attempt_at": from_us(row["last_attempt_at"]),
        "status_code": row["status_code"],
        "next_attempt_at": from_us(row["next_attempt_at"]),
        "attempts": attempts,
    }


def _attempts_of(
    conn: sqlite3.Connection, deliveries: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Each delivery's attempts, oldest first (``deliveries``: id → its webhook-id)."""
    out: dict[str, list[dict[str, Any]]] = {d: [] for d in deliveries}
    if not deliveries:
        return out
    sql = ATTEMPTS.format(marks=", ".join("?" for _ in deliveries))
    for a in dict_rows(conn, sql, list(deliveries)):
        for name in ("next_attempt_at", "attempted_at"):
            a[name] = from_us(a[name])
        a["webhook_id"] = deliveries[a["delivery_id"]]
        out[a.pop("delivery_id")].append(a)
    return out


def list_deliveries(
    conn: sqlite3.Connection, q: DeliveryQuery
) -> tuple[list[dict[str, Any]], str | None]:
    page = (
        Page("deliveries", "last_attempt_at", "delivery_id")
        .equal("subscription_id", q.subscription_id)
        .equal("event_type", q.event_type)
        .equal("outcome", q.outcome)
        .equal("workflow_id", q.workflow_id)
        .equal("run_id", q.run_id)
        .between(q.since, q.until)
        .after(q.cursor)
    )
    rows, cursor = page.fetch(conn, SUMMARY, q.limit)
    attempts = (
        _attempts_of(conn, {r["delivery_id"]: r["message_id"] for r in rows}) if q.attempts else {}
    )
    return [_summary(r, attempts.get(r["delivery_id"])) for r in rows], cursor


def get_delivery(conn: sqlite3.Connection, delivery_id: str) -> dict[str, Any] | None:
    cursor = conn.execute(
        f"SELECT {SUMMARY}, body, source_topic, source_partition, source_offset "  # noqa: S608
        "FROM deliveries WHERE delivery_id = ?",
        (delivery_id,),
    )
    cursor.row_factory = sqlite3.Row
    row = cursor.fetchone()
    if row is None:
        return None
    attempts = _attempts_of(conn, {delivery_id: row["message_id"]})[delivery_id]
    source = None
    if row["source_topic"] is not None:
        source = SourceRecord(
            topic=row["source_topic"],
            partition=row["source_partition"],
            offset=row["source_offset"],
        )
    return {**_summary(row, attempts), "body": row["body"], "source": source}


def due_for(delivery: dict[str, Any], now: datetime) -> DeliveryDue | None:
    """The record that asks the delivery service to send ``delivery`` again, when it can."""
    body, source = delivery.get("body"), delivery.get("source")
    if body is None or source is None:
        return None
    return DeliveryDue(
        delivery_id=delivery["id"],
        message_id=delivery["message_id"],
        subscription_id=delivery["subscription_id"],
        event_type=delivery["event_type"],
        workflow_id=delivery["workflow_id"],
        source=source,
        body=body,
        attempt=1,
        due_at=now,
        first_attempted_at=now,
    )


async def send_dues(ctx: AdminContext, dues: list[DeliveryDue]) -> None:
    """All of ``dues`` to the first retry tier, each acknowledged; 503 otherwise."""
    if not dues:
        return
    topic = ctx.topics.retry_tier(2)
    producer = ctx.producer
    try:
        async with asyncio.timeout(ctx.settings.publish_timeout):
            futures = []
            for due in dues:
                rec = encode(due, key=due.subscription_id, source=SOURCE)
                futures.append(
                    await producer.send(topic, rec.value, key=rec.key, headers=rec.headers)
                )
            await asyncio.gather(*futures)
    except (TimeoutError, KafkaError) as exc:
        raise unavailable("Kafka did not acknowledge the redelivery in time") from exc


class DeliveryHandlers:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def list_all(self, request: Request) -> Response:
        query = parse_query(request, DeliveryQuery)
        items, cursor = await self.ctx.view_db.read(lambda c: list_deliveries(c, query))
        listing = DeliveryList(
            items=[DeliveryOut.model_validate(d) for d in items], next_cursor=cursor
        )
        return model_response(listing)

    async def get(self, request: Request) -> Response:
        found = await self._require(request.path_params["id"])
        return model_response(DeliveryDetail.model_validate(found))

    async def redeliver(self, request: Request) -> Response:
        found = await self._require(request.path_params["id"])
        if self.ctx.view.subscription(found["subscription_id"]) is None:
            raise SubscriptionGone(f"subscription {found['subscription_id']!r} no longer exists")
        due = due_for(found, datetime.now(UTC))
        if due is None:
            raise NotRedeliverable("the log holds no body or source record for it")
        await send_dues(self.ctx, [due])
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

    async def publish_event(self, request: Request) -> Response:
        event = parse(PublishEventIn, await read_json(request), "body").root
        data = event.data
        event_id = event.id or new_event_id()
        topic = self.ctx.topics.workflow_events
        trace = publish_trace(request.headers, topic, data) if tracing.enabled else None
        record = encode(
            data,
            key=data.run_id,
            source=event.source or SOURCE,
            event_id=event_id,
            extensions=trace,
        )
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

    async def _require(self, delivery_id: str) -> dict[str, Any]:
        found = await self.ctx.view_db.read(lambda c: get_delivery(c, delivery_id))
        if found is None:
            raise not_found(f"delivery {delivery_id!r}")
        return found
