"""Signing: Standard Webhooks headers that an independent implementation verifies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import standardwebhooks

from services.delivery import message_id, render_body, sign, signature_headers
from shared.crypto import generate_subscription_secret
from shared.messages import SourceRecord, WorkflowFailed


def test_signature_matches_the_published_standard_webhooks_vector(fixtures_dir: Path) -> None:
    vectors = json.loads((fixtures_dir / "signature-vectors.json").read_text())
    vector = vectors["standard_webhooks_v1"]
    got = sign(vector["msg_id"], vector["timestamp"], vector["body"], vector["secret"])
    assert got == vector["expected"]


def test_rotation_headers_carry_one_signature_per_secret_and_each_verifies() -> None:
    old, new = generate_subscription_secret(), generate_subscription_secret()
    body = b'{"type":"workflow.completed"}'
    headers = signature_headers("msg_x", body, [new, old], datetime.now(UTC))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)


def test_webhook_id_is_stable_for_a_source_record_and_subscription_and_differs_otherwise() -> None:
    a = SourceRecord(topic="p.workflow-events", partition=1, offset=7)
    assert message_id(a, "sub-1") == message_id(SourceRecord(**a.model_dump()), "sub-1")
    others = {
        message_id(a, "sub-2"),
        message_id(SourceRecord(topic=a.topic, partition=2, offset=7), "sub-1"),
        message_id(SourceRecord(topic=a.topic, partition=1, offset=8), "sub-1"),
        message_id(SourceRecord(topic="q.workflow-events", partition=1, offset=7), "sub-1"),
    }
    assert message_id(a, "sub-1") not in others and len(others) == 4
    assert message_id(a, "sub-1").startswith("msg_")


def test_body_is_type_timestamp_and_the_event_data() -> None:
    event = WorkflowFailed(
        workflow_id="wf",
        run_id="run-1",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        error={"code": "boom", "message": "it broke"},
    )
    body = json.loads(render_body(event))
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "workflow.failed"
    assert body["timestamp"] == body["data"]["occurred_at"]
    assert body["data"]["error"] == {"code": "boom", "message": "it broke"}
    assert body["data"]["run_id"] == "run-1"
