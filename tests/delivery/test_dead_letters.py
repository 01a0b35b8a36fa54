"""What the delivery service dead-letters, against the real broker and real loopback
receivers: a delivery past its last attempt, a record on workflow events that is not one."""

from __future__ import annotations

from typing import Any

from shared.cloudevents import decode, encode
from shared.kafka import create_producer
from shared.messages import DeliveryDue
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_until
from testkit.receivers import Receiver, completed, publish
from tests.delivery.attemptlog import attempts


async def test_after_the_last_attempt_the_delivery_goes_to_the_dlq_with_an_exhausted_record(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        receiver.script("/down", [503] * 10)
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("down", url=receiver.url("/down")),
        )
        async with run_service(breaker_failure_threshold=100):
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r")]
            )
            records = await attempts(settings.kafka_bootstrap_servers, topics, min_count=4)
            dlq = await read_topic(settings.kafka_bootstrap_servers, topics.dlq, min_count=1)
    assert [r.outcome for r in records] == ["failed", "failed", "failed", "exhausted"]
    assert len(receiver.on("/down")) == 4 == len(settings.retry_schedule) + 1
    [dead] = dlq
    assert dead.headers["hookline_error_code"] == b"delivery_exhausted"
    due = decode(list(dead.headers.items()), dead.value, DeliveryDue).data
    assert due.message_id == records[0].message_id and due.attempt == 4


async def test_poison_on_workflow_events_goes_to_the_dlq_and_later_events_are_delivered(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers, topics.config, subscription("s", url=receiver.url())
        )
        async with run_service():
            async with create_producer(settings.kafka_bootstrap_servers) as producer:
                good = encode(completed("r"), key="r", source="/t")
                await producer.send_and_wait(
                    topics.workflow_events,
                    b"not json",
                    key=b"r",
                    headers=good.headers,
                    partition=0,
                )
                await producer.send_and_wait(
                    topics.workflow_events,
                    good.value,
                    key=b"r",
                    headers=good.headers,
                    partition=0,
                )
            await wait_until(lambda: len(receiver.requests) == 1, timeout=15)
            dlq = await read_topic(settings.kafka_bootstrap_servers, topics.dlq, min_count=1)
    assert dlq[0].value == b"not json"
    assert dlq[0].headers["hookline_error_code"] == b"invalid_payload"
