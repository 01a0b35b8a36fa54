"""Every service starts while Kafka is away, waits for it, and becomes ready without a restart.

Ingress, admin, dispatcher and delivery are started as processes against a broker that
is not running yet (its ports chosen and kept free). For the outage each answers
``/readyz`` with 503 and the reason, stays alive, and writes only a bounded number of
lines about it; once the broker starts, each becomes ready on its own. Then the
broker stops while they run: each turns not ready within seconds, again writes a
bounded number of lines, and is ready again on its own when the broker is back.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import pytest

from localkafka import LocalKafka
from shared.settings import Settings
from testkit import free_port_pair
from testkit.kafka import wait_until
from tests.e2e.stack import Stack

OUTAGE = 30.0  # seconds the services run before the broker starts
MAX_LINES_PER_MINUTE = 20
SERVICES = ("ingress", "admin", "dispatcher", "delivery")


def outage_lines(log: str) -> list[str]:
    """Lines a reader would take for the outage: warnings and errors, and any traceback."""
    out = []
    for line in log.splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)  # not ours: a traceback or a library writing to stderr
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            out.append(line)
    return out


def _per_minute(counted: dict[str, int], minutes: float) -> dict[str, float]:
    return {s: round(n / minutes, 1) for s, n in counted.items()}


async def _readyz(client: httpx.AsyncClient, port: int) -> tuple[int, dict[str, object]]:
    response = await client.get(f"http://127.0.0.1:{port}/readyz")
    return response.status_code, response.json()


def _health_port(ports: dict[str, int], service: str) -> int:
    """Where ``service`` answers /readyz: the ingress on its internal port only."""
    return ports["ingress_internal" if service == "ingress" else service]


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.skipif(
    not os.environ.get("HOOKLINE_FAULT_ROUNDS"), reason="a minute and more: make test-faults"
)
@pytest.mark.timeout(300)
async def test_services_started_without_kafka_become_ready_when_it_comes(
    settings: Settings, tmp_path: Path
) -> None:
    data = Path(tempfile.mkdtemp(prefix="hookline-outage-"))
    broker = LocalKafka(port=free_port_pair(), data_dir=data)
    later = settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{broker.port}", "topic_partitions": 2}
    )
    stack = Stack(later, tmp_path, HOOKLINE_OUTAGE_LOG_INTERVAL="30")
    for service in SERVICES:
        stack.add(service)
    try:
        for replica in stack.replicas.values():
            await replica.process.start()
        began = time.monotonic()
        async with httpx.AsyncClient(timeout=5.0) as client:
            await asyncio.sleep(OUTAGE / 3)  # a third of the outage: each has tried and backed off
            while time.monotonic() - began < OUTAGE:
                for service in SERVICES:
                    replica = stack.replicas[f"{service}-0"]
                    assert replica.process.running, f"{service} exited\n{stack.tail(replica.name)}"
                    status, body = await _readyz(client, _health_port(replica.ports, service))
                    assert status == 503, f"{service} is not ready without Kafka: {body}"
                    assert body.get("reasons"), f"{service} says why it is not ready: {body}"
                await asyncio.sleep(3.0)
            outage_minutes = (time.monotonic() - began) / 60
            counted = {
                service: len(outage_lines(stack.tail(f"{service}-0", 100_000)))
                for service in SERVICES
            }
            await asyncio.to_thread(broker.start)
            for replica in stack.replicas.values():
                try:
                    await replica.process.wait_ready(120)
                except (RuntimeError, TimeoutError) as exc:
                    raise AssertionError(f"{exc}\n{stack.tail(replica.name)}") from exc
                assert replica.process.starts == 1, "ready without a restart"
            print("\nstart-up outage, lines per minute:", _per_minute(counted, outage_minutes))
            for service, lines in counted.items():
                assert lines / outage_minutes < MAX_LINES_PER_MINUTE, (
                    f"{service} wrote {lines} lines in {outage_minutes:.1f} min of outage:\n"
                    + "\n".join(outage_lines(stack.tail(f"{service}-0", 100_000))[:40])
                )

            # The broker goes away while they run: not ready within seconds, the outage
            # told at a bounded rate, ready again on their own when it is back.
            before = {s: len(stack.tail(f"{s}-0", 1_000_000).splitlines()) for s in SERVICES}
            await asyncio.to_thread(broker.stop)
            began = time.monotonic()
            for service in SERVICES:
                port = _health_port(stack.replicas[f"{service}-0"].ports, service)

                async def not_ready(port: int = port) -> bool:
                    return (await _readyz(client, port))[0] == 503

                await wait_until(
                    not_ready, timeout=15, interval=0.5, message=f"{service} not ready"
                )
            flipped = time.monotonic() - began
            await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - began)))
            outage_minutes = (time.monotonic() - began) / 60
            counted = {
                s: len(outage_lines("\n".join(stack.tail(f"{s}-0", 1_000_000).splitlines()[n:])))
                for s, n in before.items()
            }
            await asyncio.to_thread(broker.start)
            for replica in stack.replicas.values():
                await replica.process.wait_ready(120)
                assert replica.process.starts == 1, "ready again without a restart"
        print(f"all not ready {flipped:.1f} s after the broker stopped")
        print("running outage, lines per minute:", _per_minute(counted, outage_minutes))
        for service, lines in counted.items():
            assert lines / outage_minutes < MAX_LINES_PER_MINUTE, (
                f"{service} wrote {lines} lines in {outage_minutes:.1f} min of outage"
            )
    finally:
        await stack.stop()
        await asyncio.to_thread(broker.stop)
        shutil.rmtree(data, ignore_errors=True)
