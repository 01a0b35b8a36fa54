"""Costs as configuration grows: 10, 1,000 and 100,000 subscriptions and as many webhooks.

For each size N (``HOOKLINE_BENCH_SCALES``, comma-separated) a fresh set of topics gets
N webhooks and N subscriptions on N/10 workflows: each workflow has ten subscriptions
(so every lifecycle event matches ten of them, whatever N is) and each webhook binds
one workflow. Written as pre-encoded records in pipelined batches. Then
``hookline ingress``, ``hookline dispatcher`` (the Kafka engine: dispatch alone) and
``hookline delivery`` run as processes, each with its config view of all 2N entities,
and are measured one at a time:

- delivery (twice: the first round meets its subscriptions for the first time, the
  second is the steady state): lifecycle events for workflows spread over all of them,
  each matching ten subscriptions whose receiver (another process, on loopback) answers
  at once; deliveries per second from the first event written to the last delivery
  succeeded (the service's own counter, read off its ``/metrics``);
- dispatch (twice, likewise): inbound events for webhooks spread over all of them;
  events per second from the first written to the last processed (its ``/metrics``);
- ingress: CPU per accepted request under the ingress bench's closed loop;
- each service's resident memory (VmRSS) once it has read the configuration.

Memory per entity is the growth of each service's RSS from the smallest size to the
largest, over the entities added (webhooks and subscriptions: every view holds both).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.delivery import RECEIVER
from bench.ingress import SECRET, WEBHOOK_ID, _cpu_seconds, _free_port, _run_load

ROOT = Path(__file__).resolve().parents[1]
SECRET_KEY = "YmVuY2gta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2w="
SCALES = [int(s) for s in os.environ.get("HOOKLINE_BENCH_SCALES", "10,1000,100000").split(",")]
MATCHING = 10
DELIVERY_EVENTS = 400  # × 10 subscriptions each
DISPATCH_EVENTS = 3000
BATCH = 5000


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _metric(port: int, name: str) -> float:
    """The sum of a counter's samples on a service's ``/metrics``."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def write_configuration(bootstrap: str, prefix: str, size: int, receiver: str) -> float:
    """N webhooks and N subscriptions (ten per workflow); the seconds it took to write them."""
    from shared.cloudevents import encode
    from shared.crypto import SecretBox, mask
    from shared.entities import Binding, Entity, StoredSecret, Subscription, Webhook, Workflow
    from shared.kafka import create_producer, ensure_topics
    from shared.topics import topic_registry

    await ensure_topics(bootstrap, topic_registry(prefix, partitions=6, retry_tiers=9))
    box, now = SecretBox(SECRET_KEY), datetime.now(UTC)
    workflows = max(1, size // MATCHING)

    def secret(key: str, plain: str) -> list[StoredSecret]:
        ciphertext = box.encrypt(plain, entity_key=key)
        return [StoredSecret(ciphertext=ciphertext, hint=mask(plain), created_at=now)]

    def entities() -> Any:
        for w in range(workflows):
            yield Workflow(id=f"wf-{w}", created_at=now, updated_at=now)
        for i in range(size):
            hook_id = WEBHOOK_ID if i == 0 else f"wh-{i}"
            yield Webhook(
                id=hook_id,
                provider="github",
                created_at=now,
                updated_at=now,
                secrets=secret(f"webhook/{hook_id}", SECRET),
                bindings=[Binding(workflow_id=f"wf-{i % workflows}", events=["push"])],
            )
            yield Subscription(
                id=f"sub-{i}",
                url=receiver,
                created_at=now,
                updated_at=now,
                secrets=secret(f"subscription/sub-{i}", "whsec_" + "A" * 43 + "="),
                events=["workflow.completed"],
                workflow_ids=[f"wf-{i % workflows}"],
            )

    started = time.perf_counter()
    async with create_producer(bootstrap, linger_ms=20, max_batch_size=1024 * 1024) as producer:
        pending = []
        entity: Entity
        for entity in entities():
            rec = encode(entity, key=entity.key, source="/bench")
            pending.append(
                await producer.send(prefix + "config", rec.value, key=rec.key, headers=rec.headers)
            )
            if len(pending) >= BATCH:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    return time.perf_counter() - started


async def _service(name: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        name,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _ready(port: int, process: asyncio.subprocess.Process, timeout: float) -> None:
    async def ready() -> bool:
        if process.returncode is not None:
            raise RuntimeError(f"a service exited with {process.returncode}")
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await _until(ready, timeout, "service ready")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def measure_delivery(bootstrap: str, prefix: str, port: int, size: int, round_: int) -> float:
    """Deliveries per second: lifecycle events each matching ten subscriptions."""
    from shared.cloudevents import encode
    from shared.kafka import create_producer
    from testkit.receivers import completed

    workflows = max(1, size // MATCHING)
    name = "hookline_delivery_attempts_total{"
    before = await _metric(port, name)
    wanted = DELIVERY_EVENTS * MATCHING
    started = time.perf_counter()
    async with create_producer(bootstrap, linger_ms=5) as producer:
        futures = []
        for n in range(DELIVERY_EVENTS):
            # Spread over the workflows: consecutive events hit distant parts of the index.
            workflow = f"wf-{(n * 7919) % workflows}"
            run_id = f"run-{round_}-{n}"
            rec = encode(completed(run_id, workflow), key=run_id, source="/bench")
            futures.append(
                await producer.send(
                    prefix + "workflow-events", rec.value, key=rec.key, headers=rec.headers
                )
            )
        await asyncio.gather(*futures)

    async def delivered() -> bool:
        return await _metric(port, name) - before >= wanted

    await _until(delivered, 300, "deliveries")
    return wanted / (time.perf_counter() - started)


async def measure_dispatch(bootstrap: str, prefix: str, port: int, size: int, round_: int) -> float:
    """Inbound events dispatched per second, for webhooks spread over all of them."""
    from shared.cloudevents import encode
    from shared.kafka import create_producer
    from shared.messages import WebhookReceived

    name = "hookline_dispatcher_inbound_total{"
    before = await _metric(port, name)
    now = datetime.now(UTC)
    started = time.perf_counter()
    async with create_producer(bootstrap, linger_ms=5) as producer:
        futures = []
        for n in range(DISPATCH_EVENTS):
            hook = (n * 7919) % size
            event = WebhookReceived(
                webhook_id=WEBHOOK_ID if hook == 0 else f"wh-{hook}",
                provider="github",
                event_type="push",
                provider_event_id=f"d-{round_}-{n}",
                received_at=now,
                payload={"ref": "refs/heads/main"},
            )
            rec = encode(event, key=event.webhook_id, source="/bench")
            futures.append(
                await producer.send(prefix + "inbound", rec.value, key=rec.key, headers=rec.headers)
            )
        await asyncio.gather(*futures)

    async def dispatched() -> bool:
        return await _metric(port, name) - before >= DISPATCH_EVENTS

    await _until(dispatched, 300, "dispatch")
    return DISPATCH_EVENTS / (time.perf_counter() - started)


async def measure_ingress_cpu(port: int, pid: int) -> tuple[float, float]:
    """(requests/s, CPU µs per request) under the ingress bench's closed loop."""
    cpu = _cpu_seconds(pid)
    peak = await _run_load(port, None)
    from bench.ingress import DURATION, WARMUP

    served = peak["requests_per_s"] * (WARMUP + DURATION) or float("nan")
    return peak["requests_per_s"], (_cpu_seconds(pid) - cpu) / served * 1e6


async def one_size(bootstrap: str, size: int, receiver: str) -> dict[str, float]:
    prefix = f"bench-scale-{size}-{uuid.uuid4().hex[:6]}."
    written = await write_configuration(bootstrap, prefix, size, receiver)
    ports = {name: _free_port() for name in ("ingress", "dispatcher", "delivery")}
    env = {
        **os.environ,
        "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HOOKLINE_TOPIC_PREFIX": prefix,
        "HOOKLINE_TOPIC_PARTITIONS": "6",
        "HOOKLINE_SECRET_KEY": SECRET_KEY,
        "HOOKLINE_HOST": "127.0.0.1",
        "HOOKLINE_INGRESS_PORT": str(ports["ingress"]),
        "HOOKLINE_DISPATCHER_PORT": str(ports["dispatcher"]),
        "HOOKLINE_DELIVERY_PORT": str(ports["delivery"]),
        "HOOKLINE_REPLICA_ID": prefix,
        "HOOKLINE_ENGINE": "kafka",
        "HOOKLINE_ALLOW_INSECURE_URLS": "true",
        "HOOKLINE_ALLOW_PRIVATE_DESTINATIONS": "true",
        "HOOKLINE_LOG_LEVEL": "WARNING",
    }
    processes: dict[str, asyncio.subprocess.Process] = {}
    out: dict[str, float] = {"config_write_s": round(written, 1)}
    try:
        started = time.perf_counter()
        for name in ports:
            processes[name] = await _service(name, env)
        for name, port in ports.items():
            await _ready(port, processes[name], timeout=120 + size / 500)
        out["services_ready_s"] = round(time.perf_counter() - started, 1)
        for name, process in processes.items():
            out[f"{name}_rss_mib"] = round(_rss_mib(process.pid), 1)
        # Twice each, the same entities both times: the first round meets every
        # subscription and webhook for the first time (its secrets decrypted, its lane
        # and breaker made); the second is the steady state, the figure compared.
        for key, measure, port in (
            ("delivery", measure_delivery, ports["delivery"]),
            ("dispatch", measure_dispatch, ports["dispatcher"]),
        ):
            first = await measure(bootstrap, prefix, port, size, 1)
            out[f"{key}_first_round_per_s"] = round(first, 1)
            out[f"{key}_per_s"] = round(await measure(bootstrap, prefix, port, size, 2), 1)
        rate, cpu_us = await measure_ingress_cpu(ports["ingress"], processes["ingress"].pid)
        out["ingress_requests_per_s"] = round(rate, 1)
        out["ingress_cpu_us_per_request"] = round(cpu_us, 1)
    finally:
        for process in processes.values():
            await _stop(process)
    return out


async def run(bootstrap: str) -> dict[str, Any]:
    receiver_port = _free_port()
    receiver = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-c", RECEIVER, str(receiver_port)], stdout=subprocess.PIPE, text=True
    )
    results: dict[int, dict[str, float]] = {}
    try:
        assert receiver.stdout is not None
        await asyncio.to_thread(receiver.stdout.readline)
        for size in SCALES:
            print(f"  {size:,} subscriptions …", flush=True)
            results[size] = await one_size(
                bootstrap, size, f"http://127.0.0.1:{receiver_port}/hook"
            )
    finally:
        receiver.kill()
        receiver.wait(timeout=5)
    return summary(results)


def summary(results: dict[int, dict[str, float]]) -> dict[str, Any]:
    """One row per size and figure; the largest size against the smallest as the ratio."""
    figures: dict[str, Any] = {}
    for size, row in results.items():
        for key, value in row.items():
            figures[f"{size}_{key}"] = value
    small, large = min(results), max(results)
    ratio = None
    if small != large:
        for key in (
            "delivery_per_s",
            "delivery_first_round_per_s",
            "dispatch_per_s",
            "ingress_cpu_us_per_request",
        ):
            figures[f"{key}_{large}_over_{small}"] = round(
                results[large][key] / results[small][key], 3
            )
        ratio = figures[f"delivery_per_s_{large}_over_{small}"]
        added = 2 * (large - small)  # webhooks and subscriptions: every view holds both
        for name in ("ingress", "dispatcher", "delivery"):
            grown = results[large][f"{name}_rss_mib"] - results[small][f"{name}_rss_mib"]
            figures[f"{name}_bytes_per_entity"] = round(grown * 1024 * 1024 / added)
    return {
        "name": "scaling",
        "figures": figures,
        "baseline": None,
        "ratio": ratio,
        "aim": "throughput at 100,000 subscriptions within 20% of the figure at 10; "
        "memory linear in the entities",
    }
