"""Ordered delivery per run (``ordering: "run"``), against the real broker and receivers."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from shared.messages import LifecycleEvent, NodeCompleted, WorkflowCompleted, WorkflowStarted
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_until
from testkit.receivers import Received, Receiver, publish


def run_events(run_id: str) -> list[LifecycleEvent]:
    now = datetime.now(UTC)
    common: dict[str, Any] = {"workflow_id": "wf-1", "run_id": run_id, "occurred_at": now}
    return [
        WorkflowStarted(**common),
        NodeCompleted(**common, node_id="a"),
        NodeCompleted(**common, node_id="b"),
        WorkflowCompleted(**common),
    ]


def step(received: Received) -> str:
    data = received.event["data"]
    return str(data.get("node_id") or received.event["type"])


EXPECTED = ["workflow.started", "a", "b", "workflow.completed"]


def fail_first_started() -> Any:
    seen: set[str] = set()

    def choose(received: Received) -> int:
        if received.event["type"] != "workflow.started":
            return 200
        webhook_id = received.headers["webhook-id"]
        if webhook_id in seen:
            return 200
        seen.add(webhook_id)
        return 500

    return choose


def assert_in_order(requests: list[Received], runs: list[str]) -> None:
    """Each run's events arrived in the order they were published: none was sent before
    the one before it had been answered with a 2xx."""
    by_run: dict[str, list[Received]] = defaultdict(list)
    for received in requests:
        by_run[received.event["data"]["run_id"]].append(received)
    for run in runs:
        arrived = by_run[run]
        delivered = [step(r) for r in arrived if r.status == 200]
        assert delivered == EXPECTED, (run, [(step(r), r.status) for r in arrived])
        for i, received in enumerate(arrived):
            # Whatever came before it of a later step is an ordering violation.
            earlier = [step(r) for r in arrived[:i]]
            position = EXPECTED.index(step(received))
            assert all(EXPECTED.index(s) <= position for s in earlier), (run, earlier)


async def test_ordered_runs_arrive_in_publish_order_though_every_first_workflow_started_fails(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    runs = [f"run-{i:03d}" for i in range(200)]
    async with Receiver() as receiver:
        receiver.answer("/ordered", fail_first_started())
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("ordered", url=receiver.url("/ordered"), ordering="run"),
            subscription("plain", url=receiver.url("/plain")),
        )
        async with run_service(breaker_failure_threshold=10_000, retry_schedule=(0.1, 0.2, 0.4)):
            events = {run: run_events(run) for run in runs}
            # Interleaved: every run's first event, then every run's second, …
            for i in range(len(EXPECTED)):
                await publish(
                    settings.kafka_bootstrap_servers,
                    topics.workflow_events,
                    [events[run][i] for run in runs],
                )
            total = len(runs) * len(EXPECTED)
            await wait_until(
                lambda: sum(r.status == 200 for r in receiver.on("/ordered")) >= total,
                timeout=90,
                message="every ordered event delivered",
            )
            await wait_until(lambda: len(receiver.on("/plain")) >= total, timeout=30)
            # Every hold ended: the entries written while runs waited are all tombstoned.
            held = await read_topic(settings.kafka_bootstrap_servers, topics.delivery_holds)
    assert_in_order(receiver.on("/ordered"), runs)
    live: dict[bytes | None, bytes | None] = {}
    for record in held:
        live[record.key] = record.value
    assert held and all(value is None for value in live.values())
    # The plain subscription is not held to any order, and nothing of it failed.
    assert {r.status for r in receiver.on("/plain")} == {200}


async def test_an_ordered_run_waiting_for_its_retry_keeps_its_order_across_a_restart(
    settings: Settings, topics: Topics, run_service: Any
) -> None:
    runs = [f"run-{i}" for i in range(5)]
    answer_ok = asyncio.Event()

    def choose(received: Received) -> int:
        if received.event["type"] == "workflow.started" and not answer_ok.is_set():
            return 503
        return 200

    async with Receiver() as receiver:
        receiver.answer("/ordered", choose)
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("ordered", url=receiver.url("/ordered"), ordering="run"),
        )
        # Retries every 2 s for 20 s: the runs wait in the hold store across the restart.
        overrides = {"breaker_failure_threshold": 10_000, "retry_schedule": (2.0,) * 10}
        async with run_service(**overrides) as service:
            await publish(
                settings.kafka_bootstrap_servers,
                topics.workflow_events,
                [event for run in runs for event in run_events(run)],
            )
            # Each run's first event failed, and the rest of the run is held behind it.
            await wait_until(
                lambda: service.held() == len(runs) * len(EXPECTED), timeout=20, message="holds"
            )
            assert {step(r) for r in receiver.on("/ordered")} == {"workflow.started"}
        answer_ok.set()
        # A new process reads the holds back and goes on where the first one stopped.
        async with run_service(**overrides) as again:
            await wait_until(
                lambda: (
                    sum(r.status == 200 for r in receiver.on("/ordered"))
                    >= len(runs) * len(EXPECTED)
                ),
                timeout=30,
            )
            await wait_until(lambda: again.held() == 0, timeout=10, message="no holds left")
    assert_in_order(receiver.on("/ordered"), runs)
