"""What ``shared._aiokafka_internals`` assumes of aiokafka; these fail when an upgrade breaks it."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from shared._aiokafka_internals import BatchBuilder, key_hash
from shared.kafka import create_producer


def test_key_hash_places_keys_where_the_default_partitioner_does() -> None:
    keys = [f"sub-{i}".encode() for i in range(500)] + [b"", b"\xff" * 40, "ü-key".encode()]
    for count in (1, 2, 3, 6, 7, 12, 50):
        partitions = list(range(count))
        for key in keys:
            assert key_hash(key) % count == DefaultPartitioner()(key, partitions, partitions)


async def test_create_batch_gives_a_batch_builder_that_says_when_it_is_full(bootstrap: str) -> None:
    async with create_producer(bootstrap, max_batch_size=16 * 1024) as producer:
        batch = producer.create_batch()
        assert isinstance(batch, BatchBuilder)
        appended = 0
        while (
            batch.append(timestamp=None, key=b"k", value=b"x" * 1000, headers=[("h", b"v")])
            is not None
        ):
            appended += 1
            assert appended < 100, "a 16 KiB batch never said it was full"
    assert appended >= 10
