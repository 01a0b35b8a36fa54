"""Dispatcher throughput with transactions on: inbound events dispatched per second.

Each round gets its own topics; a backlog of inbound events (a quarter of them
provider redeliveries) is written first, then one dispatcher drains it. The
clock starts once the dispatcher owns its partitions (start-up excluded) and
stops when the last run is committed. Two bindings per webhook, one with a
JMESPath filter, so every event costs matching, two commands, two queued
events and two ledger entries. The median of the rounds is reported.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from services.dispatcher import Dispatcher
from shared.cloudevents import encode
from shared.config_view import ConfigView
from shared.entities import Binding, Webhook
from shared.kafka import create_producer, ensure_topics
from shared.messages import WebhookReceived
from shared.topics import topic_registry

EVENTS = 4000
ROUNDS = 3
WEBHOOKS = 8
PARTITIONS = 6


def _events() -> list[WebhookReceived]:
    now = datetime.now(UTC)
    distinct = EVENTS * 3 // 4
    out = [
        WebhookReceived(
            webhook_id=f"gh-{i % WEBHOOKS}",
            provider="github",
            event_type="push",
            provider_event_id=f"d-{i}",
            received_at=now,
            headers={"x-github-event": "push"},
            payload={
                "ref": "refs/heads/main",
                "commits": [{"id": str(i)}],
                "repository": {"name": "api"},
            },
        )
        for i in range(distinct)
    ]
    return out + out[: EVENTS - distinct]


async def _round(bootstrap: str) -> dict[str, float]:
    topics = topic_registry(f"bench{uuid.uuid4().hex[:8]}.", partitions=PARTITIONS, retry_tiers=1)
    await ensure_topics(bootstrap, topics)
    now = datetime.now(UTC)
    bindings = [
        Binding(workflow_id="wf-ci", events=["push"]),
        Binding(workflow_id="wf-main", events=["push"], filter="payload.ref == 'refs/heads/main'"),
    ]
    events = _events()
    async with create_producer(bootstrap, linger_ms=5) as producer:
        for i in range(WEBHOOKS):
            hook = Webhook(
                id=f"gh-{i}", provider="github", created_at=now, updated_at=now, bindings=bindings
            )
            rec = encode(hook, key=hook.key, source="/bench")
            await producer.send_and_wait(topics.config, rec.value, key=rec.key, headers=rec.headers)
        futures = []
        for event in events:
            rec = encode(event, key=event.webhook_id, source="/bench")
            futures.append(
                await producer.send(topics.inbound, rec.value, key=rec.key, headers=rec.headers)
            )
        await asyncio.gather(*futures)
    expected_runs = len({e.provider_event_id for e in events}) * len(bindings)
    async with ConfigView(bootstrap, topics.config) as view:
        await view.wait_ready()
        dispatcher = Dispatcher(bootstrap, topics, view, transactional_id=f"{topics.prefix}bench")
        async with dispatcher:
            # Polling the component's own counters keeps the dispatcher free of bench hooks.
            while len(dispatcher.assignment()) < PARTITIONS:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            started = time.perf_counter()
            while dispatcher.ledger.size() < expected_runs:
                if time.perf_counter() - started > 120:
                    raise TimeoutError("dispatcher did not drain the backlog in 120 s")
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
            batches = dispatcher.committed_batches
    return {
        "seconds": elapsed,
        "events_per_second": len(events) / elapsed,
        "runs_per_second": expected_runs / elapsed,
        "transactions": float(batches),
    }


async def run(bootstrap: str) -> dict[str, Any]:
    rounds = [await _round(bootstrap) for _ in range(ROUNDS)]
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        "name": "dispatcher",
        "figures": {
            "inbound_events_per_round": EVENTS,
            "redelivered_share": 0.25,
            "events_dispatched_per_s_median": round(median["events_per_second"], 1),
            "runs_requested_per_s_median": round(median["runs_per_second"], 1),
            "drain_seconds_median": round(median["seconds"], 3),
            "transactions_per_round_median": median["transactions"],
            "rounds": ROUNDS,
        },
        "baseline": None,
        "ratio": None,
        "aim": "transactional dispatch (commands + queued events + ledger + offsets in one "
        "transaction per batch) well above provider webhook rates",
    }
