"""End-to-end latency: a provider's signed POST to the subscriber's ``workflow.started``
and ``workflow.completed``, through ingress, dispatcher, the local engine and delivery.

The services run as ``hookline ingress``, ``hookline dispatcher`` (``HOOKLINE_ENGINE=
local``) and ``hookline delivery`` processes against the broker; the subscriber is an
HTTP receiver on loopback in this process, and so is the provider (raw HTTP/1.1
keep-alive connections posting signed GitHub ``push`` deliveries). Every clock read
is the machine's wall clock (``time.time``), so the services' record timestamps and
the bench's own readings compare.

First the capacity: a burst of webhooks, as fast as the pipeline takes them, timed to
the last ``workflow.completed`` delivered. Then an open loop at half that rate (each
POST at its scheduled moment, whatever came before), and for each webhook:

- POST → 202 (the ingress's answer), POST → ``workflow.started`` and
  ``workflow.completed`` at the receiver: p50, p99 and max;
- per hop, from the records' own timestamps: POST → the ``inbound`` record (the
  ingress's write), → the run's command on ``workflow-commands`` (the dispatcher's
  write; visible once its transaction commits), → ``workflow.started`` on
  ``workflow-events`` (the engine's write, after it read the committed command),
  → the receiver (the engine's transaction commit, delivery's poll and the POST).

``python -m bench e2e`` runs it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from bench._e2e_load import (
    DRAIN_TIMEOUT,
    SECRET,
    WEBHOOK_ID,
    WORKFLOW_ID,
    Provider,
    Subscriber,
    Webhook,
    _until_completed,
    measure_capacity,
    post_at_rate,
)
from bench._processes import _free_port, _wait_ready

ROOT = Path(__file__).resolve().parents[1]
SECRET_KEY = "YmVuY2gta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2w="
DURATION = float(os.environ.get("HOOKLINE_BENCH_E2E_SECONDS", "20"))
CONNECTIONS = 64


# -- the services ---------------------------------------------------------------------------


async def _service(name: str, env: dict[str, str], log: Path | None) -> asyncio.subprocess.Process:
    """``hookline <name>``; its log lines to ``log`` when given (else dropped)."""
    with contextlib.ExitStack() as stack:
        out: Any = asyncio.subprocess.DEVNULL
        if log is not None:
            out = stack.enter_context(log.open("ab"))
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", name, cwd=ROOT, env=env, stdout=out, stderr=out
        )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _configure(bootstrap: str, prefix: str, receiver_url: str) -> None:
    from shared.crypto import SecretBox, mask
    from shared.entities import Binding, Node, StoredSecret, Subscription, Webhook, Workflow
    from shared.kafka import ensure_topics
    from shared.topics import topic_registry
    from testkit.config import put_entities

    await ensure_topics(bootstrap, topic_registry(prefix, partitions=6, retry_tiers=9))
    now = datetime_now()
    box = SecretBox(SECRET_KEY)

    def secret(kind: str, entity_id: str) -> StoredSecret:
        ciphertext = box.encrypt(SECRET, entity_key=f"{kind}/{entity_id}")
        return StoredSecret(ciphertext=ciphertext, hint=mask(SECRET), created_at=now)

    await put_entities(
        bootstrap,
        prefix + "config",
        Workflow(
            id=WORKFLOW_ID,
            created_at=now,
            updated_at=now,
            nodes=[Node(id="note", kind="log", config={"message": "e2e"})],
        ),
        Webhook(
            id=WEBHOOK_ID,
            provider="github",
            created_at=now,
            updated_at=now,
            secrets=[secret("webhook", WEBHOOK_ID)],
            bindings=[Binding(workflow_id=WORKFLOW_ID, events=["push"])],
        ),
        Subscription(
            id="sub-e2e",
            url=receiver_url,
            created_at=now,
            updated_at=now,
            secrets=[secret("subscription", "sub-e2e")],
            events=["workflow.started", "workflow.completed"],
        ),
    )


def datetime_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# -- the measurements -----------------------------------------------------------------------


async def record_times(bootstrap: str, prefix: str, webhooks: list[Webhook]) -> None:
    """Each webhook's inbound, command and ``workflow.started`` record timestamps."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from shared.kafka import topic_partitions

    by_delivery = {w.delivery: w for w in webhooks}
    by_run = {w.run_id: w for w in webhooks}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        for logical in ("inbound", "workflow-commands", "workflow-events"):
            topic = prefix + logical
            tps = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        _note(logical, record, by_delivery, by_run)
    finally:
        await consumer.stop()


def _note(
    logical: str, record: Any, by_delivery: dict[str, Webhook], by_run: dict[str, Webhook]
) -> None:
    at = record.timestamp / 1000
    headers = dict(record.headers or ())
    if logical == "inbound":
        found = by_delivery.get(orjson.loads(record.value)["provider_event_id"])
        if found is not None:
            found.inbound = at
        return
    data = orjson.loads(record.value)
    found = by_run.get(data.get("run_id", ""))
    if found is None:
        return
    if logical == "workflow-commands":
        found.command = found.command or at
    elif headers.get("ce_type") == b"workflow.started":
        found.started_event = at


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": pick(0.5) * 1000, "p99": pick(0.99) * 1000, "max": ordered[-1] * 1000}


def latency_figures(webhooks: list[Webhook]) -> dict[str, Any]:
    """p50/p99/max of each stretch, in milliseconds, over the webhooks that have both ends."""

    def stretch(a: str, b: str) -> dict[str, float]:
        pairs = [(getattr(w, a), getattr(w, b)) for w in webhooks]
        return _ms([end - begin for begin, end in pairs if begin is not None and end is not None])

    out: dict[str, Any] = {}
    for name, (a, b) in {
        "to_202": ("posted", "answered"),
        "to_started": ("posted", "started"),
        "to_completed": ("posted", "completed"),
        "hop_ingress_write": ("posted", "inbound"),
        "hop_dispatch": ("inbound", "command"),
        "hop_engine_start": ("command", "started_event"),
        "hop_delivery": ("started_event", "started"),
    }.items():
        for stat, value in stretch(a, b).items():
            out[f"{name}_{stat}_ms"] = round(value, 1)
    return out


async def run(bootstrap: str) -> dict[str, Any]:
    prefix = f"bench-e2e-{uuid.uuid4().hex[:8]}."
    subscriber = Subscriber()
    app = web.Application()
    app.router.add_post("/hook", subscriber.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    receiver_port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    await _configure(bootstrap, prefix, f"http://127.0.0.1:{receiver_port}/hook")
    ingress_port, ingress_internal = _free_port(), _free_port()
    env = {
        **os.environ,
        "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HOOKLINE_TOPIC_PREFIX": prefix,
        "HOOKLINE_TOPIC_PARTITIONS": "6",
        "HOOKLINE_SECRET_KEY": SECRET_KEY,
        "HOOKLINE_HOST": "127.0.0.1",
        "HOOKLINE_INGRESS_PORT": str(ingress_port),
        "HOOKLINE_INGRESS_INTERNAL_PORT": str(ingress_internal),
        "HOOKLINE_DISPATCHER_PORT": str(_free_port()),
        "HOOKLINE_DELIVERY_PORT": str(_free_port()),
        "HOOKLINE_ENGINE": "local",
        "HOOKLINE_REPLICA_ID": "bench-e2e",
        "HOOKLINE_ALLOW_INSECURE_URLS": "true",
        "HOOKLINE_ALLOW_PRIVATE_DESTINATIONS": "true",
        "HOOKLINE_LOG_LEVEL": "WARNING",
    }
    log_dir = os.environ.get("HOOKLINE_BENCH_LOG_DIR")  # the services' logs, when wanted
    logs = Path(log_dir) / f"{prefix}log" if log_dir else None
    services = [await _service(name, env, logs) for name in ("ingress", "dispatcher", "delivery")]
    provider = Provider(ingress_port)
    try:
        ingress = services[0]
        await _wait_ready(ingress_internal, ingress)
        await provider.connect(CONNECTIONS)
        # Warm-up: every service has its partitions and connections before the clock runs.
        await _until_completed(subscriber, [provider.post() for _ in range(50)], 120)
        capacity = await measure_capacity(provider, subscriber)
        rate = capacity / 2
        steady = await post_at_rate(provider, rate, DURATION)
        await _until_completed(subscriber, steady, DRAIN_TIMEOUT)
        await record_times(bootstrap, prefix, steady)
    finally:
        provider.close()
        for process in reversed(services):
            await _stop(process)
        await runner.cleanup()
    for w in steady:
        w.started = subscriber.started.get(w.run_id)
        w.completed = subscriber.completed.get(w.run_id)
    figures: dict[str, Any] = {
        "capacity_webhooks_per_s": round(capacity, 1),
        "offered_webhooks_per_s": round(rate, 1),
        "webhooks_measured": len(steady),
        "answered_202": sum(1 for w in steady if w.status == 202),
        **latency_figures(steady),
    }
    return {
        "name": "e2e",
        "figures": figures,
        "baseline": None,
        "ratio": None,
        "aim": "p99 POST → workflow.started under 150 ms at half the measured capacity",
    }


def _main() -> int:
    from bench.__main__ import main

    return main(["e2e"])


if __name__ == "__main__":
    sys.exit(_main())
