"""The one place hookline uses aiokafka beyond its public modules, and why.

The delivery service writes its records in batches it fills itself (one per
partition and round trip; ``services/delivery/_writer.py``), which aiokafka allows
through ``AIOKafkaProducer.create_batch`` and ``send_batch`` but only part-way exports:

* ``BatchBuilder``, the type ``create_batch`` returns, lives in
  ``aiokafka.producer.message_accumulator``; its ``append(timestamp=, key=, value=,
  headers=)`` returns None once the batch is full.
* ``murmur2`` is the hash aiokafka's default partitioner uses; a batch is sent to a
  partition chosen by the caller, so keyed records must be placed as the default
  partitioner (and every other Kafka client) would place them. The default
  partitioner itself wants a list of partitions per call; the hash, cached per key,
  costs less.

``tests/shared/test_aiokafka_internals.py`` fails when an aiokafka upgrade moves or
changes either.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["BatchBuilder", "key_hash"]


def key_hash(key: bytes) -> int:
    """The default partitioner's hash of ``key``: its partition is this modulo the count."""
    return int(murmur2(key)) & 0x7FFFFFFF
