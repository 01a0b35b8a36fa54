"""The delivery service against the real broker and real loopback receivers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import standardwebhooks

from shared.cloudevents import decode, encode
from shared.crypto import generate_subscription_secret
from shared.kafka import create_producer
from shared.messages import DeliveryAttempted, DeliveryDue, StatusChanged
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_committed, wait_until
from testkit.receivers import Receiver, completed, publish


async def attempts(bootstrap: str, topics: Topics, min_count: int = 0) -> list[DeliveryAttempted]:
    records = await read_topic(bootstrap, topics.delivery_attempts, min_count=min_count, timeout=10)
    out = []
    for r in records:
        data = decode(list(r.headers.items()), r.value, DeliveryAttempted).data
        out.append(data)
    return out


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


async def test_410_disables_the_subscription_in_config_and_stops_its_retries(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        receiver.script("/gone", [410] * 5)
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("gone", url=receiver.url("/gone")),
        )
        async with run_service() as service:
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r")]
            )

            def disabled() -> bool:
                sub = service.view.subscription("gone")
                return sub is not None and not sub.enabled

            await wait_until(disabled, timeout=15)
            sub = service.view.subscription("gone")
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r2")]
            )
            records = await attempts(settings.kafka_bootstrap_servers, topics, min_count=1)
            await asyncio.sleep(1.0)  # the compressed schedule's whole span: no retry may come
    assert sub is not None and sub.version == 2 and "410" in (sub.disabled_reason or "")
    assert len(receiver.on("/gone")) == 1
    assert [(r.outcome, r.status_code) for r in records] == [("disabled", 410)]


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


async def test_an_open_breaker_moves_deliveries_on_without_a_request(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        receiver.script("/bad", [500] * 100)
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("bad", url=receiver.url("/bad")),
        )
        async with run_service(
            breaker_failure_threshold=2, breaker_cooldown=30.0, max_in_flight_per_subscription=1
        ):
            await publish(
                settings.kafka_bootstrap_servers,
                topics.workflow_events,
                [completed(f"r{i}") for i in range(6)],
            )
            # 6 deliveries x 4 attempts: all settle (exhausted) though only the first
            # two requests were made; everything after went on without a request, and
            # without an attempt record: the log holds the 2 requests and the 6 ends.
            # (A skip record would come before its delivery's end, so within these 8.)
            records = await attempts(settings.kafka_bootstrap_servers, topics, min_count=8)
    assert len(receiver.on("/bad")) == 2
    assert (
        sorted((r.outcome, r.status_code, r.error) for r in records)
        == [("exhausted", None, "circuit_open")] * 6 + [("failed", 500, None)] * 2
    )


async def test_a_subscription_failing_for_too_long_is_disabled_with_a_record_saying_so(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        receiver.script("/fail", [500] * 100)
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("fail", url=receiver.url("/fail")),
        )
        async with run_service(
            disable_after_failing_for=0.7, retry_schedule=(0.4, 0.4, 0.4, 0.4)
        ) as service:
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r")]
            )

            def disabled() -> bool:
                sub = service.view.subscription("fail")
                return sub is not None and not sub.enabled

            await wait_until(disabled, timeout=15)
            records: list[DeliveryAttempted] = []

            async def recorded() -> bool:
                records[:] = await attempts(settings.kafka_bootstrap_servers, topics)
                return any(r.outcome == "disabled" for r in records)

            await wait_until(recorded, timeout=10)
    assert len(records) >= 2  # it failed for a while first
    last = records[-1]
    assert last.outcome == "disabled" and "failing continuously" in (last.error or "")
    assert all(r.outcome == "failed" for r in records[:-1])


async def test_a_hung_receiver_leaves_others_delivered_and_offsets_advancing_within_the_bound(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    events = 60
    async with Receiver() as receiver:
        receiver.hang("/hung")
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("hung", url=receiver.url("/hung")),
            subscription("fast-a", url=receiver.url("/a")),
            subscription("fast-b", url=receiver.url("/b")),
        )
        bound = 8
        async with run_service(
            request_timeout=2.0,
            max_in_flight_per_subscription=2,
            max_unsettled_per_partition=bound,
            retry_schedule=(5.0, 5.0),
        ) as service:
            await publish(
                settings.kafka_bootstrap_servers,
                topics.workflow_events,
                [completed(f"r{i}") for i in range(events)],
            )
            await wait_until(
                lambda: len(receiver.on("/a")) >= events and len(receiver.on("/b")) >= events,
                timeout=20,
                message="the fast subscriptions' deliveries",
            )
            intake = service.loops[0]
            # The receiver still hangs, yet every record gets committed: its deliveries
            # are deferred to a retry tier or time out; none holds a partition longer.
            await wait_committed(
                settings.kafka_bootstrap_servers,
                f"{settings.topic_prefix}delivery",
                topics.workflow_events,
                events,
                timeout=10,
            )
            assert intake.max_unsettled_seen <= bound
            assert len(receiver.ids("/a")) == events
    assert len(receiver.on("/hung")) >= 1


async def test_a_hung_lane_gives_its_requests_up_so_others_get_the_global_pool_and_offsets_commit(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    events = 12
    async with Receiver() as receiver:
        receiver.hang("/hung")
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("hung", url=receiver.url("/hung")),
            subscription("fast", url=receiver.url("/fast")),
        )
        # The hung lane can hold the whole global pool, and the request timeout is far
        # beyond the test's deadlines: only giving stalled requests up lets "fast" through.
        async with run_service(
            request_timeout=60.0,
            max_in_flight=2,
            max_in_flight_per_subscription=2,
            retry_schedule=(30.0, 30.0),
            stall_after=0.2,
            abandon_after=0.5,
        ):
            await publish(
                settings.kafka_bootstrap_servers,
                topics.workflow_events,
                [completed(f"r{i}") for i in range(events)],
            )
            await wait_until(
                lambda: len(receiver.on("/fast")) >= events,
                timeout=15,
                message="the fast subscription's deliveries",
            )
            await wait_committed(
                settings.kafka_bootstrap_servers,
                f"{settings.topic_prefix}delivery",
                topics.workflow_events,
                events,
                timeout=15,
            )
            records = await attempts(settings.kafka_bootstrap_servers, topics, min_count=events)
    stalled = [r for r in records if r.subscription_id == "hung" and r.error == "stalled"]
    assert stalled, [(r.subscription_id, r.outcome, r.error) for r in records]
    for record in stalled:
        assert record.outcome == "failed" and record.attempt == 1
        assert record.next_attempt_at is not None and record.status_code is None
    assert len(receiver.ids("/fast")) == events
