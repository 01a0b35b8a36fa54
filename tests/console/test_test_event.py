"""``POST /v1/subscriptions/{id}/test``: a test event reaches one subscription alone."""

from __future__ import annotations

import pytest

from services.admin.testevents import sample_event
from shared.cloudevents import decode
from shared.messages import DeliveryDue
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_until
from tests.admin.conftest import Admin

pytestmark = pytest.mark.kafka


async def test_a_test_event_is_due_for_that_subscription_only(admin: Admin) -> None:
    ctx = admin.ctx
    await put_entities(
        admin.settings.kafka_bootstrap_servers,
        admin.topics.config,
        subscription("sub-tested", url="http://127.0.0.1:9/hook", events=["node.*"]),
        subscription("sub-other", url="http://127.0.0.1:9/other"),
    )
    await wait_until(lambda: ctx.view.subscription("sub-other") is not None, timeout=10)
    answer = await admin.client.post("/v1/subscriptions/sub-tested/test")
    assert answer.status_code == 202, answer.text
    again = await admin.client.post("/v1/subscriptions/sub-tested/test")
    assert again.json()["delivery_id"] != answer.json()["delivery_id"], "a new delivery each time"
    records = await read_topic(
        admin.settings.kafka_bootstrap_servers, admin.topics.retry_tier(2), min_count=2
    )
    dues = [decode(list(r.headers.items()), r.value, DeliveryDue).data for r in records]
    assert {d.subscription_id for d in dues} == {"sub-tested"}
    assert {d.event_type for d in dues} == {"node.completed"}, "a type the subscription wants"
    assert answer.json()["delivery_id"] in {d.delivery_id for d in dues}
    missing = await admin.client.post("/v1/subscriptions/sub-nope/test")
    assert missing.status_code == 404


def test_a_subscription_that_wants_only_failures_gets_a_failure() -> None:
    from datetime import UTC, datetime

    sub = subscription("s", url="https://example.com/h", events=["workflow.failed"])
    event = sample_event(sub, datetime.now(UTC))
    assert event is not None and event.ce_type == "workflow.failed"
    assert event.run_id.startswith("test_")
