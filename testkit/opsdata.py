"""Records for the operations data, written as the services would write them.

Attempt records, inbound events, queued status changes naming their trigger, and
dead letters, for the admin view's tests and its benchmark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.structs import RecordMetadata

from shared.cloudevents import KafkaRecord, encode
from shared.kafka import create_producer
from shared.messages import (
    DeliveryAttempted,
    Message,
    RunTrigger,
    SourceRecord,
    StatusChanged,
    WebhookReceived,
)


def attempt(
    delivery: str,
    n: int,
    outcome: str,
    at: datetime,
    *,
    subscription_id: str = "sub-a",
    run_id: str = "run-1",
    **fields: Any,
) -> DeliveryAttempted:
    """One attempt record; its body names ``run_id`` as a delivery's body does."""
    base: dict[str, Any] = {
        "delivery_id": delivery,
        "message_id": f"msg_{delivery}",
        "subscription_id": subscription_id,
        "event_type": "workflow.completed",
        "workflow_id": "wf-ci",
        "source": SourceRecord(topic="t.workflow-events", partition=1, offset=n),
        "attempt": n,
        "outcome": outcome,
        "status_code": 200 if outcome == "succeeded" else 500,
        "latency_ms": 10.0 * n,
        "response_excerpt": "ok" if outcome == "succeeded" else "boom",
        "attempted_at": at,
        "url": "https://r.example/",
        "body": orjson.dumps(
            {"type": "workflow.completed", "data": {"run_id": run_id}, "n": delivery}
        ).decode(),
    }
    base.update(fields)
    return DeliveryAttempted(**base)


def inbound(
    provider_event_id: str,
    *,
    webhook_id: str = "gh-main",
    event_type: str = "push",
    received_at: datetime | None = None,
    **fields: Any,
) -> WebhookReceived:
    return WebhookReceived(
        webhook_id=webhook_id,
        provider="github",
        event_type=event_type,
        provider_event_id=provider_event_id,
        received_at=received_at or datetime.now(UTC),
        source_ip="192.30.252.1",
        headers={"x-github-event": event_type, "x-github-delivery": provider_event_id},
        payload={"ref": "refs/heads/main"},
        verification="github-sha256",
        **fields,
    )


def queued(run_id: str, trigger: RunTrigger, workflow_id: str = "wf-ci") -> StatusChanged:
    return StatusChanged(
        workflow_id=workflow_id,
        run_id=run_id,
        occurred_at=datetime.now(UTC),
        to="queued",
        trigger=trigger,
    )


def keyed(message: Message) -> KafkaRecord:
    """The record the owning service would write: keyed as its topic is keyed."""
    key = (
        getattr(message, "subscription_id", None)
        or getattr(message, "run_id", None)
        or getattr(message, "webhook_id", None)
    )
    return encode(message, key=key, source="/tests")


async def write(
    bootstrap: str, topic: str, records: Iterable[KafkaRecord | Message]
) -> list[RecordMetadata]:
    """Write records (messages are encoded and keyed), all acknowledged, in order."""
    async with create_producer(bootstrap) as producer:
        out = []
        for item in records:
            rec = item if isinstance(item, KafkaRecord) else keyed(item)
            out.append(
                await producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers)
            )
        return out


async def write_many(bootstrap: str, topic: str, records: Iterable[KafkaRecord]) -> int:
    """Write records as fast as the producer takes them; returns how many."""
    count = 0
    async with create_producer(bootstrap, linger_ms=20) as producer:
        futures = []
        for rec in records:
            futures.append(await producer.send(topic, rec.value, key=rec.key, headers=rec.headers))
            count += 1
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    return count
