"""Fan-out against the real broker and real loopback receivers: each event to the
subscriptions that want its type and workflow, as a signed Standard Webhooks request."""

from __future__ import annotations

import json
from typing import Any

import standardwebhooks

from shared.crypto import generate_subscription_secret
from shared.messages import StatusChanged
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import wait_until
from testkit.receivers import Receiver, completed, publish
from tests.delivery.attemptlog import attempts


async def test_every_delivery_verifies_with_standardwebhooks_during_a_secret_rotation(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    old, new = generate_subscription_secret(), generate_subscription_secret()
    async with Receiver() as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription(
                "sub-rot",
                secrets=[old, new],
                url=receiver.url("/rot"),
                events=["workflow.completed"],
                headers={"x-team": "blue"},
            ),
        )
        async with run_service():
            await publish(
                settings.kafka_bootstrap_servers,
                topics.workflow_events,
                [completed(f"run-{i}", output={"n": i}) for i in range(5)],
            )
            await wait_until(lambda: len(receiver.on("/rot")) >= 5, timeout=15)
    for request in receiver.on("/rot"):
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):  # a receiver holding either secret accepts it
            body = standardwebhooks.Webhook(secret).verify(request.body, request.headers)
        assert body["type"] == "workflow.completed"
        assert request.headers["User-Agent"].startswith("hookline/")
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["x-team"] == "blue"
    assert sorted(json.loads(r.body)["data"]["output"]["n"] for r in receiver.on("/rot")) == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert len(receiver.ids("/rot")) == 5  # one webhook-id per event


async def test_events_fan_out_only_to_subscriptions_that_want_their_type_and_workflow(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        subs = [
            subscription("all", secrets=["s1"], url=receiver.url("/all")),
            subscription(
                "done-wf1",
                url=receiver.url("/done"),
                events=["workflow.completed"],
                workflow_ids=["wf-1"],
            ),
            subscription("status", url=receiver.url("/status"), events=["status.changed"]),
            subscription("off", url=receiver.url("/off"), enabled=False),
        ]
        await put_entities(settings.kafka_bootstrap_servers, topics.config, *subs)
        async with run_service():
            from datetime import UTC, datetime

            await publish(
                settings.kafka_bootstrap_servers,
                topics.workflow_events,
                [
                    completed("r1", workflow_id="wf-1"),
                    completed("r2", workflow_id="wf-2"),
                    StatusChanged(
                        workflow_id="wf-2",
                        run_id="r3",
                        occurred_at=datetime.now(UTC),
                        **{"from": "queued"},
                        to="running",
                    ),
                ],
            )
            await wait_until(
                lambda: (
                    len(receiver.on("/all")) == 3
                    and len(receiver.on("/done")) == 1
                    and len(receiver.on("/status")) == 1
                ),
                timeout=15,
            )
            records = await attempts(settings.kafka_bootstrap_servers, topics, min_count=5)
    assert receiver.on("/off") == []
    assert json.loads(receiver.on("/done")[0].body)["data"]["run_id"] == "r1"
    assert {r.outcome for r in records} == {"succeeded"}
    assert sorted(r.subscription_id for r in records) == ["all", "all", "all", "done-wf1", "status"]
    for record in records:
        assert record.url is not None and record.body is not None and record.attempt == 1
        assert record.response_excerpt == "ok" and record.status_code == 200
