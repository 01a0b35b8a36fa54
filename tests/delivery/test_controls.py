"""Per-subscription controls against the real broker and receivers: pause and resume, rate
limits across two replicas, a schedule and timeout of a subscription's own, and the
operational events an operations subscription hears."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import pytest
import standardwebhooks

from services.delivery import DeliveryService
from shared.cloudevents import decode
from shared.crypto import generate_subscription_secret
from shared.entities import RateLimit
from shared.logging import JsonFormatter
from shared.messages import DeliveryAttempted
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_until
from testkit.receivers import Receiver, completed, publish


async def attempts(bootstrap: str, topics: Topics, min_count: int = 0) -> list[DeliveryAttempted]:
    records = await read_topic(bootstrap, topics.delivery_attempts, min_count=min_count, timeout=15)
    return [decode(list(r.headers.items()), r.value, DeliveryAttempted).data for r in records]


async def test_a_paused_subscription_gets_nothing_across_a_restart_and_everything_on_resume(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    events = 12
    async with Receiver() as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("paused", url=receiver.url("/paused"), paused=True),
            subscription("open", url=receiver.url("/open")),
        )
        async with run_service() as service:
            await publish(
                settings.kafka_bootstrap_servers,
                topics.workflow_events,
                [completed(f"r{i}") for i in range(events)],
            )
            await wait_until(lambda: len(receiver.on("/open")) == events, timeout=15)
            await wait_until(lambda: service.held() == events, timeout=15, message="held")
        # A new process reads them back; they still wait.
        async with run_service() as service:
            await wait_until(lambda: service.held() == events, timeout=15, message="read back")
            assert receiver.on("/paused") == []
            await put_entities(
                settings.kafka_bootstrap_servers,
                topics.config,
                subscription("paused", url=receiver.url("/paused"), paused=False, version=2),
            )
            await wait_until(lambda: len(receiver.ids("/paused")) == events, timeout=15)
            await wait_until(lambda: service.held() == 0, timeout=10, message="holds ended")
        records = await attempts(settings.kafka_bootstrap_servers, topics, 2 * events)
    paused = [r for r in records if r.subscription_id == "paused"]
    # No attempt was used up while it waited: each went out once, as its first attempt.
    assert sorted((r.attempt, r.outcome) for r in paused) == [(1, "succeeded")] * events
    assert len(receiver.on("/paused")) == events


async def test_a_rate_limit_holds_across_two_replicas_while_an_unlimited_subscription_runs_free(
    settings: Settings, topics: Topics
) -> None:
    limit, events, window = 20, 300, 10
    async with Receiver() as receiver, AsyncExitStack() as stack:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription(
                "limited",
                url=receiver.url("/limited"),
                rate_limit=RateLimit(per_second=limit, burst=1),
            ),
            subscription("free", url=receiver.url("/free")),
        )
        replicas = [await stack.enter_async_context(DeliveryService(settings)) for _ in range(2)]
        for replica in replicas:
            await replica.wait_joined()

        def balanced() -> bool:
            shares = [r.shares.fraction if r.shares else 0.0 for r in replicas]
            return all(s > 0 for s in shares) and abs(sum(shares) - 1.0) < 1e-9

        await wait_until(balanced, timeout=30, message="both replicas own partitions")
        published = time.monotonic()
        await publish(
            settings.kafka_bootstrap_servers,
            topics.workflow_events,
            [completed(f"run-{i}") for i in range(events)],
        )
        await wait_until(lambda: len(receiver.on("/free")) == events, timeout=20)
        free_took = time.monotonic() - published
        limited_then = len(receiver.on("/limited"))
        await wait_until(
            lambda: any(r.at - published >= window + 1 for r in receiver.on("/limited")),
            timeout=window + 20,
            message="ten seconds of limited deliveries",
        )
    arrivals = [r.at for r in receiver.on("/limited")]
    start = arrivals[0]
    per_second = Counter(int(at - start) for at in arrivals if at - start < window)
    # Each replica's bucket holds at most one request ahead (burst 1, halved, at least 1):
    # that is the most a second can carry beyond the limit.
    assert max(per_second.values()) <= limit + len(replicas), per_second
    assert sum(per_second.values()) <= limit * window + len(replicas)
    assert sum(per_second.values()) >= limit * window / 2  # the limit is used, not starved
    # The unlimited subscription was not held up by the limited one's backlog.
    assert free_took < window and limited_then < events / 2


async def test_a_subscription_s_own_timeout_and_schedule_are_the_ones_it_is_sent_with(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        receiver.slow("/slow", 2.0)
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("slow", url=receiver.url("/slow"), timeout=0.3, retry_schedule=[0.1]),
        )
        async with run_service(request_timeout=10.0):
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r1")]
            )
            records = await attempts(settings.kafka_bootstrap_servers, topics, 2)
    assert [(r.attempt, r.outcome, r.error) for r in records] == [
        (1, "failed", "timeout"),
        (2, "exhausted", "timeout"),
    ]
    assert all(r.latency_ms is not None and r.latency_ms < 1500 for r in records)


async def test_an_operations_subscription_hears_a_failing_subscription_disabled_and_exhausted(
    settings: Settings, topics: Topics, run_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = generate_subscription_secret()
    async with Receiver() as receiver:
        receiver.script("/gone/with", [410] * 5)
        receiver.script("/down", [503] * 20)
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("gone", url=receiver.url("/gone/with?token=hidden")),
            subscription("down", url=receiver.url("/down")),
            subscription(
                "ops",
                secrets=[secret],
                url=receiver.url("/ops"),
                events=["subscription.*", "delivery.exhausted"],
            ),
            subscription("everything", url=receiver.url("/everything")),
        )
        async with run_service(breaker_failure_threshold=100):
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r1")]
            )
            await wait_until(lambda: len(receiver.on("/ops")) >= 2, timeout=20)
            await asyncio.sleep(0.5)  # room for a notice that should not come
    told = {r.event["type"]: r for r in receiver.on("/ops")}
    assert set(told) == {"subscription.disabled", "delivery.exhausted"}
    for request in told.values():
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    disabled = told["subscription.disabled"].event["data"]
    assert disabled["subscription_id"] == "gone" and "410" in disabled["reason"]
    assert (
        disabled["host"] == "127.0.0.1"
        and "token" not in told["subscription.disabled"].body.decode()
    )
    exhausted = told["delivery.exhausted"].event["data"]
    assert exhausted["subscription_id"] == "down" and exhausted["attempts"] == 4
    # The service's log lines name the disabled subscription by id and host, never its URL
    # (httpx's own request lines are quieted by every entry point: startup.quiet_client_logs).
    lines = [
        JsonFormatter("delivery").format(r)
        for r in caplog.records
        if r.name.startswith(("services.delivery", "hookline", "shared"))
    ]
    assert any('"subscription":"gone"' in line and '"host":"127.0.0.1"' in line for line in lines)
    assert not any("token=hidden" in line or "/gone/with" in line for line in lines)
    # "*" is for lifecycle events; a subscription never hears of itself.
    assert [r.event["type"] for r in receiver.on("/everything")] == ["workflow.completed"]
    assert all(r.event["type"] == "workflow.completed" for r in receiver.on("/gone/with"))
