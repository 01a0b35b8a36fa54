"""The hand-encoded delivery records decode, through the shared codec, to what pydantic would write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.delivery._codec import Due, attempt_record, due_record
from shared.cloudevents import decode, encode
from shared.messages import DeliveryAttempted, DeliveryDue, SourceRecord

NOW = datetime(2026, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)


def _due(**changes: object) -> Due:
    fields: dict[str, object] = {
        "delivery_id": "dlv_1",
        "message_id": "msg_1",
        "subscription_id": "sub-é",
        "event_type": "workflow.completed",
        "workflow_id": "wf-1",
        "source": ("p.workflow-events", 2, 41),
        "body": '{"type":"workflow.completed","data":{"emoji":"✓"}}',
        "attempt": 3,
        "due_at": NOW + timedelta(seconds=5),
        "first_attempted_at": NOW.replace(microsecond=0),
    }
    fields.update(changes)
    return Due(**fields)  # type: ignore[arg-type]


def test_due_record_decodes_to_the_same_delivery_due_as_the_pydantic_encoding() -> None:
    due = _due()
    record = due_record(due, NOW)
    ours = decode(record.headers, record.value, DeliveryDue)
    reference = encode(due.to_message(), key=due.subscription_id, source="/x")
    theirs = decode(reference.headers, reference.value, DeliveryDue).data
    assert ours.data == theirs
    assert ours.type == "hookline.delivery.due" and ours.source == "/hookline/delivery"
    assert ours.time == NOW
    assert record.key == due.subscription_id.encode()
    assert Due.from_message(ours.data) == due


def test_due_record_keeps_a_missing_workflow_id() -> None:
    due = _due(workflow_id=None)
    record = due_record(due, NOW)
    assert decode(record.headers, record.value, DeliveryDue).data.workflow_id is None


def test_attempt_record_decodes_to_the_same_record_as_the_pydantic_model() -> None:
    due = _due()
    next_at = NOW + timedelta(minutes=5)
    record = attempt_record(
        due,
        "failed",
        NOW,
        status_code=503,
        error=None,
        latency_ms=12.345,
        excerpt="busy ✗",
        next_attempt_at=next_at,
        url="https://example.com/hook",
    )
    ours = decode(record.headers, record.value, DeliveryAttempted).data
    expected = DeliveryAttempted(
        delivery_id="dlv_1",
        message_id="msg_1",
        subscription_id="sub-é",
        event_type="workflow.completed",
        workflow_id="wf-1",
        source=SourceRecord(topic="p.workflow-events", partition=2, offset=41),
        attempt=3,
        outcome="failed",
        status_code=503,
        latency_ms=12.345,
        response_excerpt="busy ✗",
        next_attempt_at=next_at,
        attempted_at=NOW,
        url="https://example.com/hook",
        body=due.body,
    )
    reference = encode(expected, key="k", source="/x")
    assert ours == decode(reference.headers, reference.value, DeliveryAttempted).data == expected


def test_attempt_record_without_a_response_leaves_the_response_fields_empty() -> None:
    record = attempt_record(_due(), "skipped", NOW, error="circuit_open")
    ours = decode(record.headers, record.value, DeliveryAttempted).data
    assert (ours.status_code, ours.latency_ms, ours.response_excerpt, ours.next_attempt_at) == (
        None,
        None,
        None,
        None,
    )
    assert ours.error == "circuit_open" and ours.outcome == "skipped"


def test_every_record_gets_its_own_event_id() -> None:
    ids = {
        dict(due_record(_due(), NOW).headers)["ce_id"],
        dict(due_record(_due(), NOW).headers)["ce_id"],
        dict(attempt_record(_due(), "succeeded", NOW).headers)["ce_id"],
    }
    assert len(ids) == 3
