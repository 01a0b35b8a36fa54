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

And while a broker is away, aiokafka's consumers ask for metadata again the moment
an update fails (the fetcher waits on the forced update, which a refused connection
ends at once): about 700 updates a second per service, each with its log lines, a
third of a core burnt while the broker restarts. :func:`throttle_failed_metadata_updates`
makes a failed update wait the client's ``retry_backoff_ms`` before it returns, so
every client retries at most that often; a successful one returns at once.

``tests/shared/test_aiokafka_internals.py`` fails when an aiokafka upgrade moves or
changes any of these.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["BatchBuilder", "key_hash", "throttle_failed_metadata_updates"]


def key_hash(key: bytes) -> int:
    """The default partitioner's hash of ``key``: its partition is this modulo the count."""
    return int(murmur2(key)) & 0x7FFFFFFF


def throttle_failed_metadata_updates() -> None:
    """Make every aiokafka client wait ``retry_backoff_ms`` after a failed metadata
    update (idempotent; for a service's entry point)."""
    original = AIOKafkaClient._metadata_update
    if getattr(original, "hookline_throttled", False):
        return

    async def _metadata_update(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        updated = bool(await original(self, cluster_metadata, topics))
        if not updated:
            await asyncio.sleep(self._retry_backoff)
        return updated

    _metadata_update.hookline_throttled = True  # type: ignore[attr-defined]
    AIOKafkaClient._metadata_update = _metadata_update  # type: ignore[method-assign]
