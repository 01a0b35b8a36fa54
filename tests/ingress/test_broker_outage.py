"""With the broker down: 503 within the deadline; back up: 202 again; every 202 is on the topic.

This test runs its own broker (never the session's), stops and restarts it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from localkafka import LocalKafka
from shared.cloudevents import decode
from shared.messages import WebhookReceived
from shared.settings import Settings
from shared.topics import topic_registry
from testkit import TEST_SECRET_KEY, free_port_pair
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic, wait_until
from tests.ingress.helpers import github_headers, ingress_client

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SECRET = "outage-secret"
DEADLINE = 2.0
BODY = json.dumps({"ref": "refs/heads/main"}).encode()


async def post(http: httpx.AsyncClient) -> tuple[str, httpx.Response, float]:
    delivery = str(uuid.uuid4())
    headers = {**github_headers(SECRET, BODY, "push", delivery), "Content-Type": "application/json"}
    started = time.monotonic()
    response = await http.post("/webhooks/gh/github", content=BODY, headers=headers)
    return delivery, response, time.monotonic() - started


async def test_broker_outage_gives_503_in_time_and_loses_no_accepted_event():
    data = Path(tempfile.mkdtemp(prefix="hookline-ingress-outage-"))
    kafka = LocalKafka(port=free_port_pair(), data_dir=data)
    try:
        bootstrap = await asyncio.to_thread(kafka.start)
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            topic_prefix="outage.",
            topic_partitions=2,
            secret_key=TEST_SECRET_KEY,
            publish_timeout=DEADLINE,
        )
        topics = topic_registry("outage.", partitions=2, retry_tiers=len(settings.retry_schedule))
        from shared.kafka import ensure_topics

        await ensure_topics(bootstrap, topics)
        await put_entities(
            bootstrap, topics.config, webhook("gh", provider="github", secrets=[SECRET])
        )

        accepted: list[str] = []
        async with ingress_client(settings) as http:
            before = await asyncio.gather(*(post(http) for _ in range(5)))
            assert [r.status_code for _, r, _ in before] == [202] * 5
            accepted += [d for d, _, _ in before]

            assert await asyncio.to_thread(kafka.stop)
            during = await asyncio.gather(*(post(http) for _ in range(5)))
            for _, response, elapsed in during:
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"].isdigit()
                assert elapsed < DEADLINE + 1.0, f"answered after {elapsed:.2f}s"

            await asyncio.to_thread(kafka.start)

            async def accepted_again() -> bool:
                delivery, response, _ = await post(http)
                if response.status_code == 202:
                    accepted.append(delivery)
                return response.status_code == 202

            await wait_until(accepted_again, timeout=60, interval=0.5, message="202 after restart")
            after = await asyncio.gather(*(post(http) for _ in range(5)))
            assert [r.status_code for _, r, _ in after] == [202] * 5
            accepted += [d for d, _, _ in after]

        records = await read_topic(bootstrap, topics.inbound, min_count=len(accepted), timeout=30)
        on_topic = {
            decode(list(r.headers.items()), r.value, WebhookReceived).data.provider_event_id
            for r in records
        }
        missing = set(accepted) - on_topic
        assert not missing, f"{len(missing)} of {len(accepted)} accepted events are not on inbound"
    finally:
        await asyncio.to_thread(kafka.stop)
        shutil.rmtree(data, ignore_errors=True)
