"""Dead letters: listed from the view, retried from the dead-letter topic itself.

A retry reads the dead-lettered record (its original key, value and headers,
byte for byte) at its position on ``dlq`` and writes it back to its source topic
without hookline's ``hookline_*`` error headers, adding ``hookline_retry_of``
(the dead letter's id), so it is processed like a new record. A dead-lettered
*delivery* (``hookline.delivery.due``, dead-lettered once its attempts ran out)
goes instead to the first retry tier with its attempts counted from one again,
as a redelivery would. Each retry is an ``OperationState`` on ``operations``
(kind ``dead_letter_retry``), so the view shows which dead letters were retried;
the same ``Idempotency-Key`` again answers the same retry.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from starlette.requests import Request
from starlette.responses import Response

from shared.cloudevents import KafkaRecord, decode, encode
from shared.errors import Gone, IdInUse, NotRetryable, PoisonMessage
from shared.kafka import create_consumer
from shared.messages import DeliveryDue, OperationState

from .context import SOURCE, AdminContext, unavailable
from .jobs import load, save
from .listing import Page
from .opsmodels import (
    DeadLetterDetail,
    DeadLetterList,
    DeadLetterOut,
    DeadLetterQuery,
    DeadLetterRetryOut,
)
from .viewdb import from_us
from .web import model_response, not_found, parse_query

COLUMNS = (
    "d.id, d.partition, d.offset, d.source_topic, d.source_partition, d.source_offset, "
    "d.reason, d.code, d.service, d.key, d.size, d.dead_lettered_at, d.headers, d.excerpt, "
    "(SELECT o.id FROM operations o WHERE o.dead_letter_id = d.id "
    " ORDER BY o.requested_at DESC LIMIT 1) AS retry_id, "
    "(SELECT max(o.requested_at) FROM operations o WHERE o.dead_letter_id = d.id) AS retried_at"
)
DUE_TYPE = DeliveryDue.ce_type.encode()
READ_TIMEOUT = 10.0


def _out(row: Any, detail: bool) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "source_topic": row["source_topic"],
        "source_partition": row["source_partition"],
        "source_offset": row["source_offset"],
        "reason": row["code"],
        "message": row["reason"],
        "service": row["service"],
        "key": row["key"],
        "size": row["size"],
        "dead_lettered_at": from_us(row["dead_lettered_at"]),
        "retried_at": from_us(row["retried_at"]),
        "retry_id": row["retry_id"],
    }
    if detail:
        out["headers"] = orjson.loads(row["headers"])
        out["excerpt"] = row["excerpt"]
    return out


def list_dead_letters(
    conn: sqlite3.Connection, q: DeadLetterQuery
) -> tuple[list[dict[str, Any]], str | None]:
    page = (
        Page("dead_letters d", "dead_lettered_at", "id")
        .equal("source_topic", q.source_topic)
        .equal("code", q.reason)
        .between(q.since, q.until)
        .after(q.cursor)
    )
    rows, cursor = page.fetch(conn, COLUMNS, q.limit)
    return [_out(r, False) for r in rows], cursor


def get_dead_letter(conn: sqlite3.Connection, dead_letter_id: str) -> dict[str, Any] | None:
    cursor = conn.execute(f"SELECT {COLUMNS} FROM dead_letters d WHERE d.id = ?", (dead_letter_id,))  # noqa: S608
    cursor.row_factory = sqlite3.Row
    row = cursor.fetchone()
    return (
        None
        if row is None
        else {**_out(row, True), "partition": row["partition"], "offset": row["offset"]}
    )


class DeadLetterHandlers:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def list_all(self, request: Request) -> Response:
        q = parse_query(request, DeadLetterQuery)
        items, cursor = await self.ctx.view_db.read(lambda c: list_dead_letters(c, q))
        listing = DeadLetterList(
            items=[DeadLetterOut.model_validate(i) for i in items], next_cursor=cursor
        )
        return model_response(listing)

    async def get(self, request: Request) -> Response:
        found = await self._require(request.path_params["id"])
        return model_response(DeadLetterDetail.model_validate(found))

    async def retry(self, request: Request) -> Response:
        found = await self._require(request.path_params["id"])
        retry_id = request.headers.get("idempotency-key", "").strip()[:128] or (
            f"dlr_{uuid.uuid4().hex[:24]}"
        )
        existing = await load(self.ctx, "dead_letter_retry", retry_id)
        if existing is not None:
            if existing.dead_letter_id != found["id"]:
                raise IdInUse("that Idempotency-Key retried another record")
            return model_response(self._retry_out(existing), 200)
        original = await self._read(found["partition"], found["offset"])
        topic, record = self._target(found, original)
        meta = await self.ctx.publish(topic, record)
        now = datetime.now(UTC)
        state = OperationState(
            id=retry_id,
            kind="dead_letter_retry",
            status="completed",
            requested_at=now,
            updated_at=now,
            dead_letter_id=found["id"],
            topic=topic,
            positions={str(meta.partition): meta.offset},
            counts={"written": 1},
            owner=self.ctx.replica,
        )
        state = await save(self.ctx, state)
        return model_response(self._retry_out(state), 202)

    # -- helpers --------------------------------------------------------------------------

    def _target(self, found: dict[str, Any], original: Any) -> tuple[str, KafkaRecord]:
        """Where the record goes back to, and as what."""
        headers = [(k, v) for k, v in original.headers if not k.startswith("hookline_")]
        headers.append(("hookline_retry_of", found["id"].encode()))
        if dict(original.headers).get("ce_type") == DUE_TYPE:
            try:
                due = decode(original.headers, original.value, DeliveryDue).data
            except PoisonMessage as exc:
                raise NotRetryable(f"the delivery does not parse: {exc}") from exc
            now = datetime.now(UTC)
            again = due.model_copy(update={"attempt": 1, "due_at": now, "first_attempted_at": now})
            rec = encode(again, key=due.subscription_id, source=SOURCE)
            return self.ctx.topics.retry_tier(2), KafkaRecord(
                rec.key, rec.value, [*rec.headers, ("hookline_retry_of", found["id"].encode())]
            )
        topic = found["source_topic"]
        ours = {spec.name for spec in self.ctx.topics} - {self.ctx.topics.dlq}
        if topic not in ours:
            raise NotRetryable(f"its source topic {topic!r} is not one hookline writes to")
        return topic, KafkaRecord(original.key, original.value, headers)

    async def _read(self, partition: int, offset: int) -> Any:
        """The dead-lettered record itself, from the dead-letter topic."""
        tp = TopicPartition(self.ctx.topics.dlq, partition)
        consumer = create_consumer(
            self.ctx.settings.kafka_bootstrap_servers, group_id=None, client_id="hookline-admin-dlq"
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, offset)
            async with asyncio.timeout(READ_TIMEOUT):
                while True:
                    fetched = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                    for record in fetched.get(tp, []):
                        if record.offset == offset:
                            return record
                        raise Gone("the dead-letter topic no longer holds it")
        except TimeoutError as exc:
            raise Gone("the dead-letter topic no longer holds it") from exc
        except KafkaError as exc:
            raise unavailable("Kafka did not answer in time") from exc
        finally:
            await consumer.stop()

    def _retry_out(self, state: OperationState) -> DeadLetterRetryOut:
        ((partition, offset),) = state.positions.items()
        return DeadLetterRetryOut(
            id=state.id,
            dead_letter_id=state.dead_letter_id or "",
            topic=state.topic or "",
            partition=int(partition),
            offset=offset,
        )

    async def _require(self, dead_letter_id: str) -> dict[str, Any]:
        found = await self.ctx.view_db.read(lambda c: get_dead_letter(c, dead_letter_id))
        if found is None:
            raise not_found(f"dead letter {dead_letter_id!r}")
        return found
