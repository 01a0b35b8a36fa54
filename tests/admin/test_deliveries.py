"""The deliveries endpoints, redelivery, and publishing events over HTTP.

Attempt records are written straight to ``delivery-attempts`` as the delivery
service would; what redelivery asks for is read back from the first retry tier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.cloudevents import decode, encode
from shared.kafka import create_producer
from shared.messages import DeliveryAttempted, DeliveryDue, SourceRecord, WorkflowCompleted
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_until

from .conftest import Admin

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def attempt(delivery: str, n: int, outcome: str, at: datetime, **fields: Any) -> DeliveryAttempted:
    base: dict[str, Any] = {
        "delivery_id": delivery,
        "message_id": f"msg_{delivery}",
        "subscription_id": "sub-a",
        "event_type": "workflow.completed",
        "workflow_id": "wf-ci",
        "source": SourceRecord(topic="t.workflow-events", partition=1, offset=int(delivery[-1])),
        "attempt": n,
        "outcome": outcome,
        "status_code": 500 if outcome != "succeeded" else 200,
        "attempted_at": at,
        "url": "https://r.example/",
        "body": f'{{"type":"workflow.completed","n":"{delivery}"}}' if n == 1 else None,
    }
    base.update(fields)
    return DeliveryAttempted(**base)


async def write_attempts(admin: Admin, *attempts: DeliveryAttempted) -> None:
    async with create_producer(admin.settings.kafka_bootstrap_servers) as producer:
        for a in attempts:
            rec = encode(a, key=a.subscription_id, source="/tests/delivery")
            await producer.send_and_wait(
                admin.topics.delivery_attempts, rec.value, key=rec.key, headers=rec.headers
            )
        # A record the log cannot read is skipped, not fatal.
        await producer.send_and_wait(admin.topics.delivery_attempts, b"{", key=b"sub-a")


async def setup_log(admin: Admin) -> None:
    await put_entities(
        admin.settings.kafka_bootstrap_servers,
        admin.topics.config,
        subscription("sub-a", secrets=[SECRET], url="https://r.example/"),
        subscription("sub-b", secrets=[SECRET], url="https://r.example/b"),
    )
    await write_attempts(
        admin,
        attempt("d1", 1, "failed", T0),
        attempt("d1", 2, "failed", T0 + timedelta(seconds=5)),
        attempt("d1", 3, "exhausted", T0 + timedelta(seconds=30)),
        attempt("d2", 1, "succeeded", T0 + timedelta(seconds=10)),
        attempt(
            "d3", 1, "failed", T0 + timedelta(seconds=20), next_attempt_at=T0 + timedelta(minutes=1)
        ),
        attempt("d4", 1, "failed", T0 - timedelta(days=1)),
        attempt(
            "d5",
            1,
            "failed",
            T0 + timedelta(seconds=40),
            subscription_id="sub-b",
            event_type="workflow.failed",
        ),
        attempt("d6", 1, "failed", T0 + timedelta(seconds=50), body=None),
    )
    await admin.client.get("/v1/subscriptions/sub-a")
    await admin.ctx.store.sync()
    await wait_for_deliveries(admin, 6)


async def wait_for_deliveries(admin: Admin, count: int) -> None:
    async def listed() -> bool:
        answer = await admin.client.get("/v1/deliveries", params={"limit": 500})
        return answer.status_code == 200 and len(answer.json()["items"]) == count

    await wait_until(listed, timeout=15, message=f"{count} deliveries in the view")


async def test_the_log_lists_newest_first_with_filters_and_a_cursor(admin: Admin):
    await setup_log(admin)
    client = admin.client

    everything = (await client.get("/v1/deliveries")).json()
    assert [d["id"] for d in everything["items"]] == ["d6", "d5", "d1", "d3", "d2", "d4"]
    d1 = everything["items"][2]
    assert d1["outcome"] == "exhausted" and d1["attempt_count"] == 3
    assert d1["message_id"] == "msg_d1" and d1["status_code"] == 500

    async def ids(**params: Any) -> list[str]:
        answer = await client.get("/v1/deliveries", params=params)
        assert answer.status_code == 200, answer.text
        return [d["id"] for d in answer.json()["items"]]

    assert await ids(subscription_id="sub-b") == ["d5"]
    assert await ids(outcome="succeeded") == ["d2"]
    assert await ids(event_type="workflow.completed", outcome="failed") == ["d6", "d3", "d4"]
    assert (await client.get("/v1/deliveries", params={"outcome": "maybe"})).status_code == 422

    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/deliveries", params=params)).json()
        pages += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == ["d6", "d5", "d1", "d3", "d2", "d4"]

    detail = await client.get("/v1/deliveries/d1")
    assert detail.status_code == 200
    body = detail.json()
    assert [a["attempt"] for a in body["attempts"]] == [1, 2, 3]
    assert [a["outcome"] for a in body["attempts"]] == ["failed", "failed", "exhausted"]
    assert body["body"] == '{"type":"workflow.completed","n":"d1"}'
    assert body["source"] == {"topic": "t.workflow-events", "partition": 1, "offset": 1}
    assert (await client.get("/v1/deliveries/nope")).status_code == 404


async def test_redeliver_hands_the_same_webhook_id_to_the_delivery_service(admin: Admin):
    await setup_log(admin)
    client = admin.client
    before = datetime.now(UTC)
    answer = await client.post("/v1/deliveries/d2/redeliver")
    assert answer.status_code == 202, answer.text
    assert answer.json()["message_id"] == "msg_d2"

    tier = admin.topics.retry_tier(2)
    records = await read_topic(admin.settings.kafka_bootstrap_servers, tier, min_count=1)
    assert len(records) == 1 and records[0].key == b"sub-a"
    due = decode(list(records[0].headers.items()), records[0].value, DeliveryDue).data
    assert (due.delivery_id, due.message_id, due.subscription_id) == ("d2", "msg_d2", "sub-a")
    assert due.body == '{"type":"workflow.completed","n":"d2"}' and due.attempt == 1
    assert before <= due.due_at <= datetime.now(UTC)
    assert due.source == SourceRecord(topic="t.workflow-events", partition=1, offset=2)

    assert (await client.post("/v1/deliveries/nope/redeliver")).status_code == 404
    no_body = await client.post("/v1/deliveries/d6/redeliver")
    assert no_body.status_code == 409


async def test_publish_a_lifecycle_event_over_http(admin: Admin):
    client = admin.client
    answer = await client.post(
        "/v1/events",
        json={
            "type": "workflow.completed",
            "data": {
                "workflow_id": "wf-ci",
                "run_id": "run-42",
                "occurred_at": T0.isoformat(),
                "output": {"ok": True},
            },
        },
    )
    assert answer.status_code == 202, answer.text
    records = await read_topic(
        admin.settings.kafka_bootstrap_servers, admin.topics.workflow_events, min_count=1
    )
    assert len(records) == 1 and records[0].key == b"run-42"
    assert records[0].headers["ce_type"] == b"workflow.completed"
    assert records[0].headers["ce_id"].decode() == answer.json()["id"]
    event = decode(list(records[0].headers.items()), records[0].value, WorkflowCompleted)
    assert event.data.output == {"ok": True} and event.data.occurred_at == T0
    assert answer.json()["partition"] == records[0].partition

    status = await client.post(
        "/v1/events",
        json={
            "type": "status.changed",
            "id": "evt-1",
            "data": {
                "workflow_id": "wf",
                "run_id": "r",
                "occurred_at": T0.isoformat(),
                "from": "queued",
                "to": "running",
            },
        },
    )
    assert status.status_code == 202 and status.json()["id"] == "evt-1"

    unknown = await client.post("/v1/events", json={"type": "workflow.exploded", "data": {}})
    assert unknown.status_code == 422
    missing = await client.post(
        "/v1/events",
        json={
            "type": "workflow.failed",
            "data": {"workflow_id": "wf", "run_id": "r", "occurred_at": T0.isoformat()},
        },
    )
    assert missing.status_code == 422
    assert any(d["loc"][-1] == "error" for d in missing.json()["errors"])
