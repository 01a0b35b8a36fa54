"""Retries against the real broker and real loopback receivers: one webhook-id over
the attempts, a redelivery from a retry tier, Retry-After stretching the gap."""

from __future__ import annotations

from typing import Any

import orjson
import standardwebhooks

from shared.cloudevents import encode
from shared.crypto import generate_subscription_secret
from shared.kafka import create_producer
from shared.messages import DeliveryDue
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import wait_until
from testkit.receivers import Receiver, completed, publish
from tests.delivery.attemptlog import attempts


async def test_500_twice_then_200_gives_three_attempts_with_one_webhook_id_and_three_log_records(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        receiver.script("/flaky", [500, 500])
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription(
                "flaky", secrets=[generate_subscription_secret()], url=receiver.url("/flaky")
            ),
        )
        async with run_service():
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r")]
            )
            await wait_until(lambda: len(receiver.on("/flaky")) >= 3, timeout=15)
            records = await attempts(settings.kafka_bootstrap_servers, topics, min_count=3)
    assert len(receiver.on("/flaky")) == 3
    assert len(receiver.ids("/flaky")) == 1
    assert [(r.attempt, r.outcome, r.status_code) for r in records] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "succeeded", 200),
    ]
    assert len({r.message_id for r in records}) == 1
    assert records[0].next_attempt_at is not None and records[0].response_excerpt == "status 500"
    # Every attempt sent the same body, signed afresh.
    assert len({r.body for r in receiver.on("/flaky")}) == 1


async def test_a_manual_redelivery_on_tier_two_is_sent_with_its_webhook_id(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    secret = generate_subscription_secret()
    async with Receiver() as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("s", secrets=[secret], url=receiver.url()),
        )
        async with run_service():
            from datetime import UTC, datetime

            from shared.messages import SourceRecord

            now = datetime.now(UTC)
            due = DeliveryDue(
                delivery_id="dlv_manual",
                message_id="msg_manual",
                subscription_id="s",
                event_type="workflow.completed",
                source=SourceRecord(topic=topics.workflow_events, partition=0, offset=0),
                body=orjson.dumps(
                    {"type": "workflow.completed", "timestamp": "t", "data": {}}
                ).decode(),
                attempt=1,
                due_at=now,
                first_attempted_at=now,
            )
            rec = encode(due, key="s", source="/admin")
            async with create_producer(settings.kafka_bootstrap_servers) as producer:
                await producer.send_and_wait(
                    topics.retry_tier(2), rec.value, key=rec.key, headers=rec.headers
                )
            await wait_until(lambda: len(receiver.requests) == 1, timeout=15)
            records = await attempts(settings.kafka_bootstrap_servers, topics, min_count=1)
    [request] = receiver.requests
    assert request.headers["webhook-id"] == "msg_manual"
    standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    assert [(r.delivery_id, r.attempt, r.outcome) for r in records] == [
        ("dlv_manual", 1, "succeeded")
    ]


async def test_retry_after_stretches_the_gap_before_the_next_attempt(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        receiver.script("/busy", [429], **{"retry-after": "2"})
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("busy", url=receiver.url("/busy")),
        )
        async with run_service():
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r")]
            )
            await wait_until(lambda: len(receiver.on("/busy")) >= 2, timeout=15)
    first, second = receiver.on("/busy")
    assert second.at - first.at >= 1.9  # the schedule alone says 0.2 s
