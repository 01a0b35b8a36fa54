"""Dead letters: listed with their reason and headers; a retry puts the record back and it is
processed like a new one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.dispatcher import run_id_for
from shared.cloudevents import KafkaRecord, decode
from shared.deadletter import DeadLetters
from shared.entities import Binding
from shared.messages import DeliveryDue, SourceRecord
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic, wait_until
from testkit.opsdata import inbound, keyed, write
from tests.dispatcher.helpers import commands, running_dispatcher

from .conftest import Admin, running_admin

pytestmark = pytest.mark.kafka


def dead(topics: Topics, record: KafkaRecord, source: str, code: str) -> KafkaRecord:
    headers = DeadLetters(None, topics.dlq, service="dispatcher").record_headers(  # type: ignore[arg-type]
        headers=record.headers,
        reason=f"rejected: {code}",
        code=code,
        source_topic=source,
        partition=0,
        offset=3,
    )
    return KafkaRecord(record.key, record.value, headers)


async def dead_letter_ids(admin: Admin, count: int, **params: str) -> list[str]:
    found: list[str] = []

    async def listed() -> bool:
        nonlocal found
        answer = await admin.client.get("/v1/dead-letters", params=params)
        found = [d["id"] for d in answer.json().get("items", [])]
        return len(found) == count

    await wait_until(listed, timeout=15, message=f"{count} dead letters")
    return found


async def test_a_retried_inbound_record_starts_its_run_once_the_cause_is_fixed(
    settings: Settings, topics: Topics
):
    bootstrap = settings.kafka_bootstrap_servers
    # An older dispatcher dead-lettered this event (a schema it did not know yet); the
    # dispatcher running now reads it.
    event = keyed(inbound("e-dead"))
    await write(bootstrap, topics.dlq, [dead(topics, event, topics.inbound, "invalid_payload")])
    await put_entities(
        bootstrap,
        topics.config,
        webhook("gh-main", provider="github", bindings=[Binding(workflow_id="wf-ci")]),
    )
    async with (
        running_dispatcher(bootstrap, topics) as dispatcher,
        running_admin(settings, topics) as admin,
    ):
        (letter,) = await dead_letter_ids(admin, 1, source_topic=topics.inbound)
        assert await dead_letter_ids(admin, 0, reason="delivery_exhausted") == []
        detail = (await admin.client.get(f"/v1/dead-letters/{letter}")).json()
        assert detail["reason"] == "invalid_payload" and detail["source_offset"] == 3
        assert detail["headers"]["ce_type"] == "hookline.webhook.received"

        retried = await admin.client.post(
            f"/v1/dead-letters/{letter}/retry", headers={"Idempotency-Key": "fix-1"}
        )
        assert retried.status_code == 202, retried.text
        assert retried.json()["topic"] == topics.inbound
        again = await admin.client.post(
            f"/v1/dead-letters/{letter}/retry", headers={"Idempotency-Key": "fix-1"}
        )
        assert again.status_code == 200 and again.json() == retried.json()
        await wait_until(lambda: dispatcher.ledger.size() == 1, timeout=20, message="the run")
        listed = (await admin.client.get("/v1/dead-letters")).json()["items"][0]
        assert listed["retry_id"] == "fix-1" and listed["retried_at"] is not None

    cmds = commands(await read_topic(bootstrap, topics.workflow_commands, min_count=1))
    assert [c.run_id for c in cmds] == [run_id_for("gh-main", "e-dead", "wf-ci")]
    back = await read_topic(bootstrap, topics.inbound, min_count=1)
    assert len(back) == 1 and back[0].value == event.value and back[0].key == b"gh-main"
    assert back[0].headers["hookline_retry_of"] == letter.encode()
    assert not any(k.startswith("hookline_error") for k in back[0].headers)


async def test_an_exhausted_delivery_goes_back_to_the_first_retry_tier(admin: Admin):
    bootstrap = admin.settings.kafka_bootstrap_servers
    now = datetime.now(UTC)
    due = DeliveryDue(
        delivery_id="dlv_1",
        message_id="msg_1",
        subscription_id="sub-a",
        event_type="workflow.completed",
        source=SourceRecord(topic=admin.topics.workflow_events, partition=0, offset=9),
        body='{"type":"workflow.completed"}',
        attempt=4,
        due_at=now,
        first_attempted_at=now,
    )
    poison = KafkaRecord(b"sub-a", b"\x00\x01", [("ce_type", b"nonsense")])
    await write(
        bootstrap,
        admin.topics.dlq,
        [
            dead(admin.topics, keyed(due), admin.topics.workflow_events, "delivery_exhausted"),
            dead(admin.topics, poison, "elsewhere.topic", "invalid_payload"),
        ],
    )
    exhausted, foreign = await dead_letter_ids(admin, 1, reason="delivery_exhausted") + (
        await dead_letter_ids(admin, 1, reason="invalid_payload")
    )
    answer = await admin.client.post(f"/v1/dead-letters/{exhausted}/retry")
    assert answer.status_code == 202, answer.text
    assert answer.json()["topic"] == admin.topics.retry_tier(2)
    tier = await read_topic(bootstrap, admin.topics.retry_tier(2), min_count=1)
    back = decode(list(tier[0].headers.items()), tier[0].value, DeliveryDue).data
    assert (back.delivery_id, back.message_id, back.attempt) == ("dlv_1", "msg_1", 1)

    refused = await admin.client.post(f"/v1/dead-letters/{foreign}/retry")
    assert refused.status_code == 409, "never written to a topic that is not hookline's"
    assert (await admin.client.post("/v1/dead-letters/dlq_9_9/retry")).status_code == 404
