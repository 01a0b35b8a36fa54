"""Receivers that keep failing, against the real broker and real loopback receivers:
a 410 disables, an open breaker moves deliveries on, failing for too long disables."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.messages import DeliveryAttempted
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import wait_until
from testkit.receivers import Receiver, completed, publish
from tests.delivery.attemptlog import attempts


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
