"""The service as a whole when a step fails: never a record left unsettled behind a green
readiness. The broker refuses a write (a topic's limit), or cannot take it for a while."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from starlette.applications import Starlette

from shared.cloudevents import decode
from shared.health import Readiness, health_routes
from shared.messages import DeliveryDue
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_committed, wait_until
from testkit.receivers import Receiver, completed, publish
from tests.delivery.topictools import create_topic, refuse_batches


async def readyz(service: Any) -> tuple[int, dict[str, Any]]:
    readiness = Readiness()
    readiness.add("delivery", service.readiness)
    app = Starlette(routes=health_routes(readiness))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service"
    ) as client:
        response = await client.get("/readyz")
    return response.status_code, response.json()


async def test_a_refused_attempt_record_dead_letters_its_delivery_and_the_record_settles(
    settings: Settings, topics: Topics, run_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The broker refuses every batch of attempt records: larger than the topic allows.
    await refuse_batches(settings.kafka_bootstrap_servers, topics.delivery_attempts)
    events = 3
    async with Receiver() as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("s", url=receiver.url()),
        )
        with caplog.at_level(logging.WARNING):
            async with run_service(max_unsettled_age=1.0) as service:
                await publish(
                    settings.kafka_bootstrap_servers,
                    topics.workflow_events,
                    [completed(f"r{i}") for i in range(events)],
                )
                dlq = await read_topic(
                    settings.kafka_bootstrap_servers, topics.dlq, min_count=events, timeout=15
                )
                # Every record settled and committed; the service stays ready throughout.
                await wait_committed(
                    settings.kafka_bootstrap_servers,
                    f"{settings.topic_prefix}delivery",
                    topics.workflow_events,
                    events,
                    timeout=15,
                )
                assert all(n == 0 for n in service.loops[0].book.unsettled().values())
                status, body = await readyz(service)
    assert len(receiver.requests) == events  # the requests themselves went out
    assert (status, body["status"]) == (200, "ready")
    assert len(dlq) == events
    for dead in dlq:
        assert dead.headers["hookline_error_code"] == b"write_refused"
        assert b"MessageSizeTooLargeError" in dead.headers["hookline_error"]
        assert dead.headers["hookline_source_topic"] == topics.workflow_events.encode()
        due = decode(list(dead.headers.items()), dead.value, DeliveryDue).data
        assert due.subscription_id == "s" and due.attempt == 1
    causes = [getattr(r, "error", "") for r in caplog.records if "refused" in r.getMessage()]
    assert causes and all("MessageSizeTooLargeError" in c for c in causes)


async def test_a_record_held_unsettled_past_the_limit_turns_readiness_red_and_says_where(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    async with Receiver() as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("s", url=receiver.url()),
        )
        async with run_service(max_unsettled_age=1.0) as service:
            assert (await readyz(service))[0] == 200
            # The attempt records' topic goes away: the broker cannot take them (it
            # answers "unknown topic", which is worth retrying) until it is back.
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
            await admin.start()
            try:
                await admin.delete_topics([topics.delivery_attempts])
            finally:
                await admin.close()
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r")]
            )
            await wait_until(lambda: len(receiver.requests) == 1, timeout=15, message="sent")

            async def not_ready() -> bool:
                return (await readyz(service))[0] == 503

            await wait_until(not_ready, timeout=15, message="readiness turned red")
            _, body = await readyz(service)
            assert body["checks"] == {"delivery": False}
            reason = body["reasons"]["delivery"]
            assert f"{topics.workflow_events}/" in reason and "unsettled" in reason
            assert not service.ready()

            await create_topic(
                settings.kafka_bootstrap_servers, topics.delivery_attempts, partitions=3
            )

            async def ready_again() -> bool:
                return (await readyz(service))[0] == 200

            await wait_until(ready_again, timeout=45, message="ready once the record settled")
        assert len(await read_topic(settings.kafka_bootstrap_servers, topics.dlq)) == 0
