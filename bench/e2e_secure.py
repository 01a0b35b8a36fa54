"""End-to-end latency: a signed GitHub push until the subscriber gets ``workflow.started``.

The whole path as processes: ``hookline ingress`` (signature, 202 after Kafka's
acknowledgement) → ``inbound`` → ``hookline dispatcher`` with the local engine (binding,
transaction, run start) → ``workflow-events`` → ``hookline delivery`` → a receiver on
loopback. Pushes go one at a time (latency, not throughput): the figure for each is the
time from just before its POST to the receiver's arrival of its ``workflow.started``.

Measured twice in one run: over plaintext, on the benchmark's broker, and over SASL_SSL
(SCRAM-SHA-512 over TLS, ACLs enforced), on a secured local broker of its own
(``hookline kafka start --secure``) where each service runs as its own user with its
grants alone. The secured figures are reported against the plaintext ones (the baseline
column); the ratio is of the medians.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from devstack.supervisor import HOOKLINE, ServiceProcess
from shared.kafka import ensure_topics
from shared.kafka_security import kafka_security
from shared.topics import topic_registry
from testkit import FIXTURES, TEST_SECRET_KEY, free_port_pair
from testkit.config import put_entities, subscription, webhook, workflow
from testkit.receivers import Receiver

PUSHES = int(os.environ.get("HOOKLINE_BENCH_E2E_PUSHES", "100"))
WARMUP = 5
SECRET = "bench-e2e-github-secret"
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SERVICES = ("delivery", "dispatcher", "ingress")
BODY = (FIXTURES / "github" / "push" / "payload.json").read_bytes()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _services(
    bootstrap: str, prefix: str, folder: Path, service_env: Mapping[str, Mapping[str, str]]
) -> AsyncIterator[int]:
    """The three services as processes; yields the ingress' public port."""
    ports = {name: _free_port() for name in (*SERVICES, "internal", "admin")}
    common = {
        "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HOOKLINE_TOPIC_PREFIX": prefix,
        "HOOKLINE_TOPIC_PARTITIONS": "3",
        "HOOKLINE_SECRET_KEY": TEST_SECRET_KEY,  # testkit.config encrypts the secrets with it
        "HOOKLINE_ALLOW_PRIVATE_DESTINATIONS": "1",
        "HOOKLINE_ALLOW_INSECURE_URLS": "1",
        "HOOKLINE_ENGINE": "local",
        "HOOKLINE_HOST": "127.0.0.1",
        "HOOKLINE_SHUTDOWN_GRACE": "5",
        "HOOKLINE_INGRESS_PORT": str(ports["ingress"]),
        "HOOKLINE_INGRESS_INTERNAL_PORT": str(ports["internal"]),
        "HOOKLINE_DISPATCHER_PORT": str(ports["dispatcher"]),
        "HOOKLINE_DELIVERY_PORT": str(ports["delivery"]),
        "HOOKLINE_ADMIN_PORT": str(ports["admin"]),
    }
    children = []
    for name in SERVICES:
        ready = ports["internal" if name == "ingress" else name]
        children.append(
            ServiceProcess(
                name,
                [*HOOKLINE, name],
                env={**common, **service_env.get(name, {}), "HOOKLINE_REPLICA_ID": f"{name}-0"},
                ready_url=f"http://127.0.0.1:{ready}/readyz",
                log_path=folder / f"{name}.log",
            )
        )
    try:
        for child in children:
            await child.start()
        for child in children:
            try:
                await child.wait_ready(120)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n{_tails(folder)}") from exc
        yield ports["ingress"]
    finally:
        for child in reversed(children):
            await child.stop(grace=15)


def _tails(folder: Path, size: int = 2000) -> str:
    """The end of each service's log, for a benchmark that failed."""
    return "\n".join(
        f"{path.name}: {path.read_text(errors='replace')[-size:]}"
        for path in sorted(folder.glob("*.log"))
    )


def _push() -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": f"sha256={digest}",
    }


async def _latencies(
    port: int, receiver: Receiver, count: int, patience: float = 30
) -> list[float]:
    """One push at a time: seconds from its POST to the receiver's ``workflow.started``."""
    out: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for _ in range(count):
            seen = len(receiver.requests)
            started = time.monotonic()
            answer = await http.post("/webhooks/gh/github", content=BODY, headers=_push())
            if answer.status_code != 202:
                raise RuntimeError(f"push answered {answer.status_code}: {answer.text}")
            deadline = started + patience
            while True:
                arrived = [
                    r
                    for r in receiver.requests[seen:]
                    if orjson.loads(r.body).get("type") == "workflow.started"
                ]
                if arrived:
                    out.append(arrived[0].at - started)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workflow.started did not arrive within {patience:g} s")
                await asyncio.sleep(0.002)  # the arrival time is the receiver's, not this poll's
    return out


async def _measure(
    bootstrap: str, service_env: Mapping[str, Mapping[str, str]], prepare: Any
) -> dict[str, Any]:
    prefix = f"bench-e2e-{uuid.uuid4().hex[:8]}."
    folder = Path(tempfile.mkdtemp(prefix="hookline-bench-e2e-"))
    try:
        topics = await prepare(prefix)
        async with Receiver() as receiver:
            await put_entities(
                bootstrap,
                topics.config,
                workflow("wf-bench", nodes=[{"id": "build", "kind": "log"}]),
                webhook(
                    "gh",
                    provider="github",
                    secrets=[SECRET],
                    bindings=[{"workflow_id": "wf-bench", "events": ["push"]}],
                ),
                subscription(
                    "sub-bench",
                    url=receiver.url(),
                    secrets=[RECEIVER_SECRET],
                    events=["workflow.started"],
                ),
            )
            async with _services(bootstrap, prefix, folder, service_env) as port:
                try:
                    # A fresh broker creates its transaction log on the first transaction
                    # (50 partitions): the warm-up waits that out.
                    await _latencies(port, receiver, WARMUP, patience=120)
                    values = await _latencies(port, receiver, PUSHES)
                except RuntimeError as exc:
                    raise RuntimeError(f"{exc}\n{_tails(folder)}") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "pushes": len(ordered),
    }


async def _plaintext(bootstrap: str) -> dict[str, Any]:
    async def prepare(prefix: str) -> Any:
        topics = topic_registry(prefix, partitions=3)
        await ensure_topics(bootstrap, topics)
        return topics

    return await _measure(bootstrap, {}, prepare)


async def _secured() -> dict[str, Any]:
    from localkafka import LocalKafka
    from localkafka.security import SUPER_USER, grant_services

    folder = Path(tempfile.mkdtemp(prefix="hookline-bench-secure-kafka-"))
    broker = LocalKafka(port=free_port_pair(), data_dir=folder, secure=True)
    try:
        bootstrap = broker.start()
        files = broker.secure_files

        async def prepare(prefix: str) -> Any:
            await grant_services(bootstrap, files, prefix)
            topics = topic_registry(prefix, partitions=3)
            await ensure_topics(bootstrap, topics, security=files.security("topics"))
            return topics

        # The benchmark's own reads and writes (the config) as the super user; each
        # service as itself.
        with kafka_security(files.security(SUPER_USER)):
            return await _measure(
                bootstrap, {s: files.env(s, bootstrap) for s in SERVICES}, prepare
            )
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def run(bootstrap: str) -> dict[str, Any]:
    plain = await _plaintext(bootstrap)
    secured = await _secured()
    return {
        "name": "e2e: SASL_SSL vs plaintext",
        "figures": secured,
        "baseline": plain,
        "ratio": round(secured["p50_ms"] / plain["p50_ms"], 3) if plain["p50_ms"] else None,
        "aim": "push to workflow.started at the subscriber; SASL_SSL p50 within 1.5x plaintext",
    }
