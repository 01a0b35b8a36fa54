"""Poison records go to the dead-letter topic with their reason; the consumer goes on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.cloudevents import encode
from shared.deadletter import DeadLetters, decode_or_divert
from shared.kafka import create_consumer, create_producer
from shared.messages import LIFECYCLE_EVENTS, StatusChanged, WorkflowStarted
from shared.topics import Topics
from testkit.kafka import read_topic

NOW = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.mark.kafka
async def test_malformed_records_are_dead_lettered_and_consumption_continues(
    bootstrap: str, topics: Topics
):
    good_1 = encode(
        WorkflowStarted(workflow_id="w", run_id="r1", occurred_at=NOW), key="r1", source="/t"
    )
    good_2 = encode(
        StatusChanged(workflow_id="w", run_id="r2", occurred_at=NOW, to="running"),
        key="r2",
        source="/t",
    )
    headers_ok = dict(good_1.headers)
    no_type = [(k, v) for k, v in good_1.headers if k != "ce_type"]
    unknown = [(k, b"workflow.exploded" if k == "ce_type" else v) for k, v in good_1.headers]
    poison = [
        (b"bad-json", b"{not json", list(headers_ok.items()), "invalid_payload"),
        (b"no-type", good_1.value, no_type, "missing_header"),
        (b"unknown", good_1.value, unknown, "unknown_type"),
        (b"schema", b'{"workflow_id": 1}', list(headers_ok.items()), "invalid_payload"),
        (b"no-headers", good_1.value, [], "missing_header"),
    ]
    topic = topics.workflow_events
    async with create_producer(bootstrap) as producer:
        await producer.send_and_wait(
            topic, good_1.value, key=good_1.key, headers=good_1.headers, partition=0
        )
        for key, value, headers, _ in poison:
            await producer.send_and_wait(topic, value, key=key, headers=headers, partition=0)
        await producer.send_and_wait(
            topic, good_2.value, key=good_2.key, headers=good_2.headers, partition=0
        )

        dead_letters = DeadLetters(producer, topics.dlq, service="test")
        consumer = create_consumer(bootstrap, topic, group_id=f"{topics.prefix}g")
        decoded = []
        async with consumer:
            seen = 0
            while seen < 2 + len(poison):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        seen += 1
                        event = await decode_or_divert(record, LIFECYCLE_EVENTS, dead_letters)
                        if event is not None:
                            decoded.append(event.data.run_id)  # type: ignore[attr-defined]

    assert decoded == ["r1", "r2"], "the record after the poison is still consumed"
    dead = await read_topic(bootstrap, topics.dlq, min_count=len(poison))
    by_key = {r.key: r for r in dead}
    assert set(by_key) == {p[0] for p in poison}
    for key, value, _, code in poison:
        record = by_key[key]
        assert record.value == value, "the original bytes are kept"
        assert record.headers["hookline_error_code"] == code.encode()
        assert record.headers["hookline_error"]
        assert record.headers["hookline_source_topic"] == topic.encode()
