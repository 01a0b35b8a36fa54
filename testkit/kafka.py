"""Test helpers for talking to the real broker: read a topic, wait for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import kafka_client_options, topic_partitions

T = TypeVar("T")


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    read_committed: bool = True,
    timeout: float = 10.0,
    min_count: int = 0,
) -> list[Record]:
    """Every record now on ``topic`` (up to its end offsets, waiting for ``min_count``)."""
    consumer = AIOKafkaConsumer(
        **kafka_client_options(),
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        out: list[Record] = []
        tps = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            ends = await consumer.end_offsets(tps)
            while True:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= ends[tp] for tp in tps):
                    break
                if time.monotonic() > deadline:
                    break
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    out.extend(
                        Record(
                            tp.topic,
                            tp.partition,
                            r.offset,
                            r.key,
                            r.value,
                            dict(r.headers or ()),
                        )
                        for r in records
                    )
            if len(out) >= min_count or time.monotonic() > deadline:
                return sorted(out, key=lambda r: (r.partition, r.offset))
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome: Any = condition()
        if asyncio.iscoroutine(outcome) or isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


async def wait_committed(
    bootstrap: str, group_id: str, topic: str, total: int, timeout: float = 10.0
) -> None:
    """Wait until ``group_id`` has committed offsets on ``topic`` that add up to ``total``
    (every record of a topic written from offset 0 on, when ``total`` is its count)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_client_options())
    await admin.start()
    try:

        async def all_committed() -> bool:
            offsets = await admin.list_consumer_group_offsets(group_id)
            return bool(sum(m.offset for tp, m in offsets.items() if tp.topic == topic) == total)

        await wait_until(all_committed, timeout=timeout, message=f"offsets at {total} on {topic}")
    finally:
        await admin.close()
