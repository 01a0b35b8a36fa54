"""Every topic message survives a trip through the real broker, headers and value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.cloudevents import decode, encode
from shared.entities import Binding, Node, StoredSecret, Subscription, Webhook, Workflow
from shared.kafka import create_producer
from shared.messages import (
    DeliveryAttempted,
    DeliveryDue,
    ErrorInfo,
    ErrorOccurred,
    Message,
    NodeCompleted,
    RunRequested,
    SourceRecord,
    StatusChanged,
    WebhookReceived,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)
from shared.topics import Topics
from testkit.kafka import read_topic

NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
INBOUND = WebhookReceived(
    webhook_id="gh-main",
    provider="github",
    event_type="pull_request.opened",
    provider_event_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
    received_at=NOW,
    source_ip="192.30.252.1",
    headers={"x-github-event": "pull_request"},
    payload={"action": "opened", "number": 1, "nested": {"ünïcode": [1, 2.5, None]}},
)
RUN: dict[str, Any] = {"workflow_id": "wf-ci", "run_id": "run-1", "occurred_at": NOW}
SOURCE = SourceRecord(topic="hookline.workflow-events", partition=2, offset=41)

SAMPLES: list[Message] = [
    INBOUND,
    RunRequested(
        run_id="run-1",
        workflow_id="wf-ci",
        webhook_id="gh-main",
        provider_event_id="d1",
        event_type="push",
        requested_at=NOW,
        input=INBOUND,
    ),
    WorkflowStarted(**RUN),
    WorkflowCompleted(**RUN, output={"ok": True}),
    WorkflowFailed(**RUN, error=ErrorInfo(code="node_failed", message="boom")),
    NodeCompleted(**RUN, node_id="build", output="built"),
    ErrorOccurred(**RUN, error=ErrorInfo(code="x", message="y"), node_id="build"),
    StatusChanged(**RUN, **{"from": "queued"}, to="running"),
    DeliveryDue(
        delivery_id="d-1",
        message_id="msg_1",
        subscription_id="sub_1",
        event_type="workflow.completed",
        source=SOURCE,
        body='{"type":"workflow.completed"}',
        attempt=2,
        due_at=NOW,
        first_attempted_at=NOW,
    ),
    DeliveryAttempted(
        delivery_id="d-1",
        message_id="msg_1",
        subscription_id="sub_1",
        event_type="workflow.completed",
        source=SOURCE,
        attempt=1,
        outcome="failed",
        status_code=500,
        latency_ms=12.5,
        response_excerpt="oops",
        next_attempt_at=NOW,
        attempted_at=NOW,
    ),
    Webhook(
        id="gh-main",
        created_at=NOW,
        updated_at=NOW,
        provider="github",
        secrets=[StoredSecret(ciphertext="v1:abc", hint="…abcd", created_at=NOW)],
        bindings=[Binding(workflow_id="wf-ci", events=["push", "pull_request.*"])],
    ),
    Subscription(id="sub_1", created_at=NOW, updated_at=NOW, url="https://example.com/hook"),
    Workflow(id="wf-ci", created_at=NOW, updated_at=NOW, nodes=[Node(id="build", kind="log")]),
]


@pytest.mark.kafka
async def test_every_message_round_trips_through_the_broker(bootstrap: str, topics: Topics):
    topic = topics.workflow_events
    async with create_producer(bootstrap) as producer:
        for i, message in enumerate(SAMPLES):
            out = encode(message, key=f"k{i}", source="/tests", event_id=f"id-{i}", time=NOW)
            await producer.send_and_wait(
                topic, out.value, key=out.key, headers=out.headers, partition=0
            )
    records = await read_topic(bootstrap, topic, min_count=len(SAMPLES))
    assert len(records) == len(SAMPLES)
    for i, (record, original) in enumerate(zip(records, SAMPLES, strict=True)):
        assert record.key == f"k{i}".encode()
        assert record.headers["ce_specversion"] == b"1.0"
        assert record.headers["ce_type"] == original.ce_type.encode()
        assert record.headers["ce_id"] == f"id-{i}".encode()
        assert record.headers["ce_source"] == b"/tests"
        assert record.headers["content-type"] == b"application/json"
        event = decode(list(record.headers.items()), record.value, type(original))
        assert event.data == original
        assert event.time == NOW
