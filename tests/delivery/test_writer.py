"""The batching record writer, against the real broker."""

from __future__ import annotations

import asyncio

from services.delivery._writer import RecordWriter
from shared.cloudevents import KafkaRecord
from shared.kafka import create_producer
from shared.topics import Topics
from testkit.kafka import Record, read_topic

HEADERS = [("ce_type", b"test.record")]


def _record(key: str, n: int, size: int = 0) -> KafkaRecord:
    return KafkaRecord(key.encode(), f"{n}:".encode() + b"x" * size, HEADERS)


def _number(stored: Record) -> int:
    return int((stored.value or b"").split(b":")[0])


async def test_records_land_acknowledged_where_the_default_partitioner_puts_them(
    bootstrap: str, topics: Topics
) -> None:
    keys = [f"sub-{i}" for i in range(12)]
    async with create_producer(bootstrap, max_batch_size=64 * 1024) as producer:
        # Where the producer's own send puts each key (murmur2, like every Kafka client).
        expected = {}
        for key in keys:
            meta = await (await producer.send(topics.dlq, b"probe", key=key.encode()))
            expected[key] = meta.partition
        async with RecordWriter(producer) as writer:
            # One tick's writes, some keys many times, one record larger than a batch.
            records = [_record(keys[n % len(keys)], n) for n in range(300)]
            records.append(_record(keys[0], 300, size=100 * 1024))
            futures = [await writer.write(topics.delivery_attempts, r) for r in records]
            await asyncio.wait_for(asyncio.gather(*futures), 15)
    stored = await read_topic(bootstrap, topics.delivery_attempts, min_count=len(records))
    assert len(stored) == len(records)
    assert sorted(_number(r) for r in stored) == list(range(301))
    for r in stored:
        assert r.partition == expected[(r.key or b"").decode()], r.key
        assert r.headers == dict(HEADERS)
    # Per partition, in the order written (one batch after another).
    by_partition: dict[int, list[int]] = {}
    for r in sorted(stored, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(r.partition, []).append(_number(r))
    assert all(values == sorted(values) for values in by_partition.values())


async def test_a_cancelled_writer_leaves_its_batch_to_the_others(
    bootstrap: str, topics: Topics
) -> None:
    async with create_producer(bootstrap) as producer, RecordWriter(producer) as writer:
        first = await writer.write(topics.delivery_attempts, _record("same", 1))
        second = await writer.write(topics.delivery_attempts, _record("same", 2))
        waiting = asyncio.create_task(asyncio.wait_for(first, 15))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.wait_for(second, 15)  # the shared batch still arrives
    stored = await read_topic(bootstrap, topics.delivery_attempts, min_count=2)
    assert sorted(_number(r) for r in stored) == [1, 2]
