"""Measuring ingress servers in rounds, as ``bench.ingress`` and ``bench.tracing`` do: the
webhook the load signs for, a server started for each side (a helper process, ``python -m
bench.ingress serve``), the load run against it (``python -m bench.ingress load``), and
the figures of one round and over the rounds.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._load import CONCURRENCY, DURATION, SECRET, WARMUP, WEBHOOK_ID
from bench._processes import _cpu_seconds, _free_port, _wait_ready

ROOT = Path(__file__).resolve().parents[1]
SECRET_KEY = "YmVuY2gta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2w="
LOAD_FACTOR = 0.7


async def _helper(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.ingress",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE if args[0] == "load" else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _run_load(port: int, rate: float | None, cafile: Path | None) -> dict[str, Any]:
    args = ["load", "--port", str(port), "--concurrency", str(CONCURRENCY)]
    args += ["--duration", str(DURATION)]
    if rate is not None:
        args += ["--rate", f"{rate:.1f}"]
    if cafile is not None:
        args += ["--cafile", str(cafile)]
    process = await _helper(*args)
    out, _ = await process.communicate()
    result: dict[str, Any] = json.loads(out)
    return result


async def _start(
    side: Side, env: dict[str, str], tls: tuple[Path, Path, Path] | None = None
) -> tuple[int, asyncio.subprocess.Process]:
    port = ready = _free_port()
    env = {**env, **side.env}
    if side.kind != "bare":
        ready = _free_port()  # the ingress answers /readyz on its internal port only
        env["HOOKLINE_INGRESS_INTERNAL_PORT"] = str(ready)
    if side.tls and tls is not None:
        env.update(HOOKLINE_TLS_CERTFILE=str(tls[1]), HOOKLINE_TLS_KEYFILE=str(tls[2]))
    args = ["serve", "--kind", side.kind, "--port", str(port), "--server", side.server]
    server = await _helper(*args, env=env)
    if side.server == "granian" and side.kind != "bare":
        # The app alone, without hookline's internal port: it answers 503 for any webhook
        # until its lifespan has started, then 404 for one it does not know.
        await _wait_ready(
            port, server, path="/webhooks/bench-probe", method="POST", ready_status=404
        )
    else:
        await _wait_ready(ready, server)
    return port, server


async def _round(port: int, pid: int, broker: int | None, cafile: Path | None) -> dict[str, Any]:
    """One side, once: the closed-loop peak, then the open loop at 70% of it."""
    cpu = _cpu_seconds(pid)
    broker_cpu = _cpu_seconds(broker) if broker else 0.0
    peak = await _run_load(port, None, cafile)
    # CPU per request at the peak, of the server and of the broker beside it on this
    # machine (warm-up included on both sides of the division: the closed loop runs at
    # the same rate throughout).
    served = peak["requests_per_s"] * (WARMUP + DURATION) or float("nan")
    cpu_us = (_cpu_seconds(pid) - cpu) / served * 1e6
    broker_us = (_cpu_seconds(broker) - broker_cpu) / served * 1e6 if broker else float("nan")
    steady = await _run_load(port, peak["requests_per_s"] * LOAD_FACTOR, cafile)
    return {
        "requests_per_s": peak["requests_per_s"],
        "server_cpu_us_per_request": cpu_us,
        "broker_cpu_us_per_request": broker_us,
        "p50_ms_closed_loop": peak["p50_ms"],
        "p99_ms_closed_loop": peak["p99_ms"],
        "rate_at_70pct_per_s": steady["requests_per_s"],
        "p50_ms_at_70pct": steady["p50_ms"],
        "p99_ms_at_70pct": steady["p99_ms"],
        "answered_202": peak["accepted"] + steady["accepted"],
        "answered_other": (peak["completed"] - peak["accepted"])
        + (steady["completed"] - steady["accepted"]),
    }


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds (counts are summed); each round's figures are kept too."""
    out: dict[str, Any] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        if key.startswith("answered"):
            out[key] = sum(values)
        else:
            out[key] = round(statistics.median(values), 2)
    out["rounds_requests_per_s"] = [round(r["requests_per_s"]) for r in rounds]
    out["rounds_p99_ms_at_70pct"] = [round(r["p99_ms_at_70pct"], 1) for r in rounds]
    return out


async def _prepare(bootstrap: str, prefix: str) -> None:
    from shared.cloudevents import encode
    from shared.crypto import SecretBox, mask
    from shared.entities import StoredSecret, Webhook
    from shared.kafka import create_producer, ensure_topics
    from shared.topics import topic_registry

    await ensure_topics(bootstrap, topic_registry(prefix, partitions=6))
    now = datetime.now(UTC)
    key = f"webhook/{WEBHOOK_ID}"
    stored = StoredSecret(
        ciphertext=SecretBox(SECRET_KEY).encrypt(SECRET, entity_key=key),
        hint=mask(SECRET),
        created_at=now,
    )
    hook = Webhook(
        id=WEBHOOK_ID, provider="github", secrets=[stored], created_at=now, updated_at=now
    )
    record = encode(hook, key=hook.key, source="/bench")
    async with create_producer(bootstrap) as producer:
        await producer.send_and_wait(
            prefix + "config", record.value, key=record.key, headers=record.headers
        )


@dataclass(frozen=True)
class Side:
    """One server measured: the app (``hookline`` or ``bare``), the HTTP server, and the
    environment that selects a lever (a worker count, the Kafka client)."""

    name: str
    kind: str = "hookline"
    server: str = "uvicorn"
    env: dict[str, str] = field(default_factory=dict)
    tls: bool = False  # HTTPS on the public port, the load trusting the bench's CA
