"""Costs as configuration grows: 10, 1,000 and 100,000 subscriptions and as many webhooks.

For each size N (``HOOKLINE_BENCH_SCALES``, comma-separated) a fresh set of topics gets
N webhooks and N subscriptions on N/10 workflows: each workflow has ten subscriptions
(so every lifecycle event matches ten of them, whatever N is) and each webhook binds
one workflow. Written as pipelined batches of records. Then, for every size at once,
``hookline ingress``, ``hookline dispatcher`` (the Kafka engine: dispatch alone) and
``hookline delivery`` run as processes, each with its config view of all 2N entities;
the sizes are measured in interleaved rounds (``HOOKLINE_BENCH_ROUNDS``, the order
turning each round), after a first round that meets every entity for the first time
(reported apart), with the service's CPU per unit of work beside each rate:

- delivery: lifecycle events for workflows spread over all of them,
  each matching ten subscriptions whose receiver (another process, on loopback) answers
  at once; deliveries per second from the first event written to the last delivery
  succeeded (the service's own counter, read off its ``/metrics``);
- dispatch: inbound events for webhooks spread over all of them;
  events per second from the first written to the last processed (its ``/metrics``);
- ingress: CPU per accepted request under the ingress bench's closed loop;
- each service's resident memory (VmRSS) once it has read the configuration.

The ratios are the largest size's figures over the smallest's, the median of the
per-round ratios. Memory per entity is the growth of each service's RSS from the
smallest size to the largest, over the entities added (webhooks and subscriptions:
every view holds both).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench._ingress_rounds import _run_load
from bench._load import SECRET, WEBHOOK_ID
from bench._processes import _cpu_seconds, _free_port
from bench.delivery import RECEIVER

ROOT = Path(__file__).resolve().parents[1]
SECRET_KEY = "YmVuY2gta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2w="
SCALES = [int(s) for s in os.environ.get("HOOKLINE_BENCH_SCALES", "10,1000,100000").split(",")]
MATCHING = 10
ROUNDS = int(os.environ.get("HOOKLINE_BENCH_ROUNDS", "3"))
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


async def measure_delivery(size: Size, round_: int) -> tuple[float, float]:
    """(deliveries per second, the service's CPU µs per delivery): lifecycle events each
    matching ten subscriptions."""
    from shared.cloudevents import encode
    from shared.kafka import create_producer
    from testkit.receivers import completed

    port, pid = size.ports["delivery"], size.processes["delivery"].pid
    workflows = max(1, size.n // MATCHING)
    name = "hookline_delivery_attempts_total{"
    before, cpu = await _metric(port, name), _cpu_seconds(pid)
    wanted = DELIVERY_EVENTS * MATCHING
    started = time.perf_counter()
    async with create_producer(size.bootstrap, linger_ms=5) as producer:
        futures = []
        for n in range(DELIVERY_EVENTS):
            # Spread over the workflows: consecutive events hit distant parts of the index.
            workflow = f"wf-{(n * 7919) % workflows}"
            run_id = f"run-{round_}-{n}"
            rec = encode(completed(run_id, workflow), key=run_id, source="/bench")
            futures.append(
                await producer.send(
                    size.prefix + "workflow-events", rec.value, key=rec.key, headers=rec.headers
                )
            )
        await asyncio.gather(*futures)

    async def delivered() -> bool:
        return await _metric(port, name) - before >= wanted

    await _until(delivered, 300, "deliveries")
    elapsed = time.perf_counter() - started
    return wanted / elapsed, (_cpu_seconds(pid) - cpu) / wanted * 1e6


async def measure_dispatch(size: Size, round_: int) -> tuple[float, float]:
    """(inbound events dispatched per second, CPU µs per event), for webhooks spread over
    all of them."""
    from shared.cloudevents import encode
    from shared.kafka import create_producer
    from shared.messages import WebhookReceived

    port, pid = size.ports["dispatcher"], size.processes["dispatcher"].pid
    name = "hookline_dispatcher_inbound_total{"
    before, cpu = await _metric(port, name), _cpu_seconds(pid)
    now = datetime.now(UTC)
    started = time.perf_counter()
    async with create_producer(size.bootstrap, linger_ms=5) as producer:
        futures = []
        for n in range(DISPATCH_EVENTS):
            hook = (n * 7919) % size.n
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
                await producer.send(
                    size.prefix + "inbound", rec.value, key=rec.key, headers=rec.headers
                )
            )
        await asyncio.gather(*futures)

    async def dispatched() -> bool:
        return await _metric(port, name) - before >= DISPATCH_EVENTS

    await _until(dispatched, 300, "dispatch")
    elapsed = time.perf_counter() - started
    return DISPATCH_EVENTS / elapsed, (_cpu_seconds(pid) - cpu) / DISPATCH_EVENTS * 1e6


async def measure_ingress(size: Size, round_: int) -> tuple[float, float]:
    """(requests/s, CPU µs per request) under the ingress bench's closed loop."""
    from bench._load import DURATION, WARMUP

    pid = size.processes["ingress"].pid
    cpu = _cpu_seconds(pid)
    peak = await _run_load(size.ports["ingress"], None, None)
    served = peak["requests_per_s"] * (WARMUP + DURATION) or float("nan")
    return peak["requests_per_s"], (_cpu_seconds(pid) - cpu) / served * 1e6


@dataclass
class Size:
    """One configuration size and the three services running over it."""

    bootstrap: str
    n: int
    prefix: str
    ports: dict[str, int]
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    ingress_internal: int = field(default_factory=_free_port)

    async def start(self, receiver: str) -> None:
        written = await write_configuration(self.bootstrap, self.prefix, self.n, receiver)
        self.figures["config_write_s"] = round(written, 1)
        env = {
            **os.environ,
            "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "HOOKLINE_TOPIC_PREFIX": self.prefix,
            "HOOKLINE_TOPIC_PARTITIONS": "6",
            "HOOKLINE_SECRET_KEY": SECRET_KEY,
            "HOOKLINE_HOST": "127.0.0.1",
            "HOOKLINE_INGRESS_PORT": str(self.ports["ingress"]),
            "HOOKLINE_INGRESS_INTERNAL_PORT": str(self.ingress_internal),
            "HOOKLINE_DISPATCHER_PORT": str(self.ports["dispatcher"]),
            "HOOKLINE_DELIVERY_PORT": str(self.ports["delivery"]),
            "HOOKLINE_REPLICA_ID": self.prefix,
            "HOOKLINE_ENGINE": "kafka",
            "HOOKLINE_ALLOW_INSECURE_URLS": "true",
            "HOOKLINE_ALLOW_PRIVATE_DESTINATIONS": "true",
            "HOOKLINE_LOG_LEVEL": "WARNING",
        }
        started = time.perf_counter()
        for name in self.ports:
            self.processes[name] = await _service(name, env)
        for name, port in self.ports.items():
            # The ingress answers /readyz on its internal port only.
            probe = self.ingress_internal if name == "ingress" else port
            await _ready(probe, self.processes[name], timeout=120 + self.n / 500)
        self.figures["services_ready_s"] = round(time.perf_counter() - started, 1)
        for name, process in self.processes.items():
            self.figures[f"{name}_rss_mib"] = round(_rss_mib(process.pid), 1)

    async def stop(self) -> None:
        for process in self.processes.values():
            await _stop(process)


MEASURES = {"delivery": measure_delivery, "dispatch": measure_dispatch, "ingress": measure_ingress}


async def run(bootstrap: str) -> dict[str, Any]:
    receiver_port = _free_port()
    receiver = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-c", RECEIVER, str(receiver_port)], stdout=subprocess.PIPE, text=True
    )
    sizes = [
        Size(
            bootstrap,
            n,
            f"bench-scale-{n}-{uuid.uuid4().hex[:6]}.",
            {name: _free_port() for name in ("ingress", "dispatcher", "delivery")},
        )
        for n in SCALES
    ]
    rounds: dict[int, list[dict[str, float]]] = {size.n: [] for size in sizes}
    try:
        assert receiver.stdout is not None
        await asyncio.to_thread(receiver.stdout.readline)
        url = f"http://127.0.0.1:{receiver_port}/hook"
        for size in sizes:
            print(f"  {size.n:,} subscriptions: writing, starting …", flush=True)
            await size.start(url)
        # Round 0 meets every subscription and webhook for the first time (secrets
        # decrypted, lanes and breakers made): reported apart, not in the medians.
        for n in range(ROUNDS + 1):
            shift = n % len(sizes)
            for size in sizes[shift:] + sizes[:shift]:
                row: dict[str, float] = {}
                for key, measure in MEASURES.items():
                    if n == 0 and key == "ingress":
                        continue
                    rate, cpu_us = await measure(size, n)
                    row[f"{key}_per_s"], row[f"{key}_cpu_us"] = round(rate, 1), round(cpu_us, 1)
                if n == 0:
                    size.figures["delivery_first_round_per_s"] = row["delivery_per_s"]
                    size.figures["dispatch_first_round_per_s"] = row["dispatch_per_s"]
                else:
                    rounds[size.n].append(row)
    finally:
        for size in sizes:
            await size.stop()
        receiver.kill()
        receiver.wait(timeout=5)
    return summary(sizes, rounds)


def summary(sizes: list[Size], rounds: dict[int, list[dict[str, float]]]) -> dict[str, Any]:
    """Per size, the medians over the rounds; the largest size against the smallest, as
    the median of the per-round ratios."""
    figures: dict[str, Any] = {}
    for size in sizes:
        for key, value in size.figures.items():
            figures[f"{size.n}_{key}"] = value
        for key in rounds[size.n][0]:
            values = [r[key] for r in rounds[size.n]]
            figures[f"{size.n}_{key}"] = round(statistics.median(values), 1)
            figures[f"{size.n}_rounds_{key}"] = values
    small, large = min(rounds), max(rounds)
    ratio = None
    if small != large:
        for key in rounds[small][0]:
            per_round = [b[key] / a[key] for a, b in zip(rounds[small], rounds[large], strict=True)]
            figures[f"{key}_{large}_over_{small}"] = round(statistics.median(per_round), 3)
        ratio = figures[f"delivery_per_s_{large}_over_{small}"]
        by_n = {size.n: size for size in sizes}
        added = 2 * (large - small)  # webhooks and subscriptions: every view holds both
        for name in ("ingress", "dispatcher", "delivery"):
            grown = by_n[large].figures[f"{name}_rss_mib"] - by_n[small].figures[f"{name}_rss_mib"]
            figures[f"{name}_bytes_per_entity"] = round(grown * 1024 * 1024 / added)
    return {
        "name": "scaling",
        "figures": figures,
        "baseline": None,
        "ratio": ratio,
        "aim": "throughput at 100,000 subscriptions within 20% of the figure at 10; "
        "memory linear in the entities",
    }
