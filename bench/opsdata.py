"""The admin service's view of the operations data, at 100,000 and 1,000,000 attempt records.

Attempt records shaped like the delivery service's (50 subscriptions, one delivery
in ten failed, bodies of a few hundred bytes) are written
pre-encoded to ``delivery-attempts``. Then ``hookline admin`` is started as a
process of its own on an empty view file, and timed until ``/readyz`` answers
200 (it is ready once caught up to the end offsets seen at start): that is the
catch-up from empty. Its resident memory is read from ``/proc`` once caught up,
and a filtered list query (a subscription's failed deliveries, a page of 50) is
timed 300 times over HTTP, after 20 untimed ones: p50 and p99. Done at 100,000 records, then again from
empty at 1,000,000.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from shared.kafka import create_producer, ensure_topics
from shared.topics import topic_registry
from testkit import TEST_ADMIN_TOKEN, TEST_SECRET_KEY

SMALL, LARGE = 100_000, 1_000_000
SUBSCRIPTIONS = 50
PARTITIONS = 6
QUERIES = 300
ROOT = Path(__file__).resolve().parents[1]
HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_source", b"/bench"),
    ("ce_type", b"hookline.delivery.attempted"),
    ("content-type", b"application/json"),
]


def _records(start: int, count: int, t0: datetime) -> list[tuple[int, bytes, bytes, list[Any]]]:
    """``count`` attempt records from number ``start`` on: (partition, key, value, headers)."""
    out = []
    for n in range(start, start + count):
        # Each subscription gets every 50th record; one in ten of its deliveries failed.
        sub = f"sub-{n % SUBSCRIPTIONS}"
        failing = (n // SUBSCRIPTIONS) % 10 == 3
        at = t0 + timedelta(milliseconds=n * 40)
        value = {
            "delivery_id": f"dlv_{n:012d}",
            "message_id": f"msg_{n:012d}",
            "subscription_id": sub,
            "event_type": "workflow.completed",
            "workflow_id": f"wf-{n % 20}",
            "source": {"topic": "bench.workflow-events", "partition": n % 6, "offset": n},
            "attempt": 1,
            "outcome": "failed" if failing else "succeeded",
            "status_code": 503 if failing else 200,
            "error": None,
            "latency_ms": 20.0 + (n % 97),
            "response_excerpt": "unavailable" if failing else "ok",
            "next_attempt_at": None,
            "attempted_at": at,
            "url": f"https://receiver.example/{sub}",
            "body": orjson.dumps(
                {
                    "type": "workflow.completed",
                    "timestamp": at,
                    "data": {
                        "workflow_id": f"wf-{n % 20}",
                        "run_id": f"run-{n}",
                        "occurred_at": at,
                        "output": {"nodes": 3},
                    },
                },
                option=orjson.OPT_UTC_Z,
            ).decode(),
        }
        headers = [*HEADERS, ("ce_id", f"b{n}".encode())]
        out.append(
            (
                hash(sub) % PARTITIONS,
                sub.encode(),
                orjson.dumps(value, option=orjson.OPT_UTC_Z),
                headers,
            )
        )
    return out


async def _write(bootstrap: str, topic: str, start: int, count: int, t0: datetime) -> None:
    async with create_producer(bootstrap, linger_ms=50, max_batch_size=512 * 1024) as producer:
        step = 20_000
        for first in range(start, start + count, step):
            futures = []
            for partition, key, value, headers in _records(
                first, min(step, start + count - first), t0
            ):
                futures.append(
                    await producer.send(topic, value, key=key, headers=headers, partition=partition)
                )
            await asyncio.gather(*futures)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(bootstrap: str, prefix: str, view: Path) -> dict[str, float]:
    """Start ``hookline admin`` on an empty view; catch-up time, RSS, query latency."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        HOOKLINE_TOPIC_PREFIX=prefix,
        HOOKLINE_TOPIC_PARTITIONS=str(PARTITIONS),
        HOOKLINE_SECRET_KEY=TEST_SECRET_KEY,
        HOOKLINE_ADMIN_TOKEN=TEST_ADMIN_TOKEN,
        HOOKLINE_HOST="127.0.0.1",
        HOOKLINE_ADMIN_PORT=str(port),
        HOOKLINE_ADMIN_VIEW_PATH=str(view),
        HOOKLINE_LOG_LEVEL="WARNING",
    )
    for suffix in ("", "-wal", "-shm"):
        Path(f"{view}{suffix}").unlink(missing_ok=True)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "admin"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the admin service exited with {proc.returncode}")
            if time.monotonic() - started > 600:
                raise TimeoutError("the admin service did not catch up in 600 s")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        catch_up = time.monotonic() - started
        rss = _rss_mib(proc.pid)
        latencies = []
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
        ) as c:
            for i in range(-20, QUERIES):  # the first 20 warm the connections up, untimed
                params: dict[str, str | int] = {
                    "subscription_id": f"sub-{i % SUBSCRIPTIONS}",
                    "outcome": "failed",
                    "limit": 50,
                }
                begun = time.perf_counter()
                answer = c.get("/v1/deliveries", params=params)
                if i >= 0:
                    latencies.append((time.perf_counter() - begun) * 1000)
                assert answer.status_code == 200 and answer.json()["items"], answer.text
        latencies.sort()
        return {
            "catch_up_s": round(catch_up, 2),
            "rss_mib": round(rss, 1),
            "query_p50_ms": round(statistics.median(latencies), 2),
            "query_p99_ms": round(latencies[int(0.99 * len(latencies)) - 1], 2),
            "view_file_mib": round(view.stat().st_size / 2**20, 1),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def run(bootstrap: str) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    topics = topic_registry(prefix, partitions=PARTITIONS, retry_tiers=1)
    await ensure_topics(bootstrap, topics)
    t0 = datetime.now(UTC) - timedelta(hours=12)
    folder = Path(tempfile.mkdtemp(prefix="hookline-bench-view-"))
    view = folder / "view.sqlite3"
    began = time.monotonic()
    await _write(bootstrap, topics.delivery_attempts, 0, SMALL, t0)
    small = await asyncio.to_thread(_measure, bootstrap, prefix, view)
    await _write(bootstrap, topics.delivery_attempts, SMALL, LARGE - SMALL, t0)
    written = time.monotonic() - began
    large = await asyncio.to_thread(_measure, bootstrap, prefix, view)
    await asyncio.to_thread(shutil.rmtree, folder, True)
    figures: dict[str, Any] = {f"{k}_100k": v for k, v in small.items()}
    figures.update({f"{k}_1m": v for k, v in large.items()})
    figures["records_per_s_1m"] = round(LARGE / large["catch_up_s"], 1)
    figures["rss_ratio_1m_to_100k"] = round(large["rss_mib"] / small["rss_mib"], 3)
    figures["write_s"] = round(written, 1)
    return {
        "name": "opsdata",
        "figures": figures,
        "baseline": None,
        "ratio": figures["rss_ratio_1m_to_100k"],
        "aim": "RSS at 1M within 1.5x of 100k; p99 of a filtered list under 50 ms",
    }
