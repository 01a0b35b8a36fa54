"""The fault suite: kill -9 every process in turn and restart the broker under steady load.

Two replicas each of the dispatcher and the delivery service (so partitions
move between them) and one ingress run against a broker of this test's own.
Webhooks are posted at a steady rate while each process is SIGKILLed and
restarted in turn and the broker is restarted. Then everything is accounted
for: every 202'd event is on ``inbound``; each started exactly one run per bound
workflow; every lifecycle event of those runs reached the subscriber at least
once, and every duplicate delivery carried the same webhook-id.

``HOOKLINE_FAULT_ROUNDS`` sets how many kill cycles run (``make test`` runs one,
``make test-faults`` six).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from localkafka import LocalKafka
from shared.cloudevents import decode_any
from shared.kafka import ensure_topics
from shared.messages import RunRequested, WebhookReceived
from shared.settings import Settings
from shared.topics import topic_registry
from testkit import free_port_pair
from testkit.config import put_entities, subscription, webhook, workflow
from testkit.kafka import read_topic, wait_until
from tests.conftest import BrokerHandle
from tests.e2e.stack import Receiver, Stack

GITHUB_SECRET = "fault-github-secret"
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WORKFLOWS = ("wf-a", "wf-b")
RATE = 10.0  # posts per second


@dataclasses.dataclass
class Load:
    sent: int = 0
    accepted: list[str] = dataclasses.field(default_factory=list)
    refused_503: int = 0
    other_status: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    connection_errors: int = 0


async def _post_steadily(stack: Stack, load: Load, stop: asyncio.Event) -> None:
    body = orjson.dumps({"ref": "refs/heads/main", "after": "abc", "commits": []})
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    interval = 1.0 / RATE
    async with httpx.AsyncClient(timeout=10.0) as client:
        next_at = time.monotonic()
        while not stop.is_set():
            delivery = str(uuid.uuid4())
            load.sent += 1
            try:
                response = await client.post(
                    f"{stack.url()}/webhooks/gh-fault/github",
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "x-github-event": "push",
                        "x-github-delivery": delivery,
                        "x-hub-signature-256": signature,
                    },
                )
            except httpx.TransportError:
                load.connection_errors += 1
            else:
                if response.status_code == 202:
                    load.accepted.append(delivery)
                elif response.status_code == 503:
                    load.refused_503 += 1
                else:
                    load.other_status[response.status_code] += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def _chaos(stack: Stack, broker: LocalKafka, rounds: int) -> list[str]:
    """Kill and restart each process in turn; restart the broker once per round."""
    done: list[str] = []
    victims = ["dispatcher-0", "delivery-0", "ingress-0", "dispatcher-1", "delivery-1"]
    for _ in range(rounds):
        for name in victims:
            await asyncio.sleep(1.5)
            process = stack.replicas[name].process
            await process.kill()
            done.append(f"kill -9 {name}")
            await asyncio.sleep(0.5)
            await process.start()
            await process.wait_ready(90)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(broker.stop)
        done.append("broker restart")
        await asyncio.to_thread(broker.start)
    return done


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.timeout(600)
async def test_nothing_is_lost_when_every_process_and_the_broker_restart(
    settings: Settings, broker: BrokerHandle, tmp_path: Path
) -> None:
    if broker.local is None and not os.environ.get("HOOKLINE_FAULTS_ANY_BROKER"):
        pytest.skip("the fault suite restarts a broker of its own, from the local launcher")
    rounds = int(os.environ.get("HOOKLINE_FAULT_ROUNDS", "1"))
    data = Path(tempfile.mkdtemp(prefix="hookline-faults-"))
    own = LocalKafka(port=free_port_pair(), data_dir=data)
    bootstrap = await asyncio.to_thread(own.start)
    settings = settings.model_copy(
        update={"kafka_bootstrap_servers": bootstrap, "retry_schedule": (0.5, 1.0, 2.0, 4.0, 8.0)}
    )
    topics = topic_registry(settings.topic_prefix, partitions=3, retry_tiers=5)
    await ensure_topics(bootstrap, topics)
    stack = Stack(settings, tmp_path)
    try:
        async with Receiver(RECEIVER_SECRET) as receiver:
            await put_entities(
                bootstrap,
                topics.config,
                *[workflow(w, nodes=[{"id": "step", "kind": "log"}]) for w in WORKFLOWS],
                webhook(
                    "gh-fault",
                    provider="github",
                    secrets=[GITHUB_SECRET],
                    bindings=[{"workflow_id": w, "events": ["push"]} for w in WORKFLOWS],
                ),
                subscription("sub-fault", url=receiver.url, secrets=[RECEIVER_SECRET]),
            )
            stack.add("ingress", 0)
            for i in (0, 1):
                stack.add("dispatcher", i)
                stack.add("delivery", i)
            await stack.start()

            load = Load()
            stop = asyncio.Event()
            poster = asyncio.create_task(_post_steadily(stack, load, stop))
            try:
                actions = await _chaos(stack, own, rounds)
                await asyncio.sleep(2.0)
            finally:
                stop.set()
                await poster
            report = await _account(bootstrap, topics, load, receiver, settings)
            _print_table(load, report, actions)
            if report["lost"] or report["duplicate_runs"] or report["missing_deliveries"]:
                print(stack.logs()[-8000:])
            assert load.accepted, "the load was accepted at least some of the time"
            assert report["lost"] == 0, "every 202'd event is on inbound"
            assert report["duplicate_runs"] == 0, "one run per bound workflow per event"
            assert report["missing_runs"] == 0, "every accepted event started its runs"
            assert report["missing_deliveries"] == 0, "every lifecycle event was delivered"
            assert report["split_ids"] == 0, "duplicates carry the same webhook-id"
    finally:
        await stack.stop()
        await asyncio.to_thread(own.stop)
        shutil.rmtree(data, ignore_errors=True)


async def _account(bootstrap, topics, load: Load, receiver: Receiver, settings) -> dict[str, int]:
    accepted = set(load.accepted)

    inbound = await read_topic(bootstrap, topics.inbound, min_count=len(accepted), timeout=30)
    on_inbound = {
        decode_any(
            list(r.headers.items()), r.value, expect=[WebhookReceived]
        ).data.provider_event_id  # type: ignore[attr-defined]
        for r in inbound
    }
    lost = len(accepted - on_inbound)

    expected_runs = len(accepted) * len(WORKFLOWS)
    runs: collections.Counter[tuple[str, str]] = collections.Counter()

    async def commands_settled() -> bool:
        records = await read_topic(bootstrap, topics.workflow_commands, timeout=10)
        runs.clear()
        for r in records:
            cmd = decode_any(list(r.headers.items()), r.value, expect=[RunRequested]).data
            runs[(cmd.provider_event_id, cmd.workflow_id)] += 1  # type: ignore[attr-defined]
        return sum(1 for k in runs if k[0] in accepted) >= expected_runs

    await wait_until(commands_settled, timeout=90, interval=1.0, message="every run requested")
    missing_runs = expected_runs - sum(1 for k in runs if k[0] in accepted)
    duplicate_runs = sum(n - 1 for n in runs.values() if n > 1)

    # Every lifecycle event of the runs, each identified by (run, type, node or status).
    events: set[tuple[str, str, str]] = set()

    async def deliveries_settled() -> bool:
        records = await read_topic(bootstrap, topics.workflow_events, timeout=10)
        events.clear()
        for r in records:
            data = orjson.loads(r.value or b"{}")
            kind = r.headers.get("ce_type", b"").decode()
            events.add((data["run_id"], kind, str(data.get("node_id") or data.get("to"))))
        delivered = {
            (d.data["run_id"], d.type, str(d.data.get("node_id") or d.data.get("to")))
            for d in receiver.deliveries
        }
        return bool(events) and events <= delivered and len(events) >= expected_runs * 6

    await wait_until(deliveries_settled, timeout=120, interval=1.0, message="every delivery")
    delivered_ids: dict[tuple[str, str, str], set[str]] = collections.defaultdict(set)
    for d in receiver.deliveries:
        key = (d.data["run_id"], d.type, str(d.data.get("node_id") or d.data.get("to")))
        delivered_ids[key].add(d.webhook_id)
    return {
        "lost": lost,
        "missing_runs": missing_runs,
        "duplicate_runs": duplicate_runs,
        "events": len(events),
        "missing_deliveries": len(events - set(delivered_ids)),
        "deliveries": len(receiver.deliveries),
        "duplicate_deliveries": len(receiver.deliveries) - len(delivered_ids),
        "split_ids": sum(1 for ids in delivered_ids.values() if len(ids) > 1),
    }


def _print_table(load: Load, report: dict[str, int], actions: list[str]) -> None:
    rows = [
        ("sent", load.sent),
        ("accepted (202)", len(load.accepted)),
        ("refused with 503", load.refused_503),
        ("connection refused/reset", load.connection_errors),
        ("other statuses", sum(load.other_status.values())),
        ("lost (must be 0)", report["lost"]),
        ("runs requested twice (must be 0)", report["duplicate_runs"]),
        ("lifecycle events", report["events"]),
        ("deliveries received", report["deliveries"]),
        ("duplicate deliveries", report["duplicate_deliveries"]),
        ("duplicates with a new webhook-id (must be 0)", report["split_ids"]),
    ]
    print("\nfault suite: " + ", ".join(actions))
    for name, value in rows:
        print(f"  {name:<46} {value:>8}")
