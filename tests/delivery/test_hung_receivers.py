"""Receivers that never answer, against the real broker and real loopback receivers:
the other subscriptions are delivered and offsets commit within the bounds."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import wait_committed, wait_until
from testkit.receivers import Receiver, completed, publish
from tests.delivery.attemptlog import attempts


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
