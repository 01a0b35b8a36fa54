"""Records out, in batches: what the deliveries of one loop tick write goes as one batch
per partition, and every record of a batch is acknowledged by the batch's one future.

The producer's own ``send`` costs about 20 µs of CPU per record (a future, metadata
and a coroutine chain per record, each future resolved one by one); a delivery writes
at least one record, so that was the largest single cost after the HTTP request.
Partitions are chosen as the producer's default partitioner would (murmur2 of the key),
so keyed records land where any other producer would put them. What this takes from
aiokafka beyond its public modules is in ``shared._aiokafka_internals``, with the reason.

Lifecycle: ``async with RecordWriter(producer)``; leaving the block sends what is
pending and waits for it (the producer itself is closed by its owner, afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaProducer

from services.delivery._codec import PinnedRecord
from shared._aiokafka_internals import BatchBuilder, key_hash
from shared.cloudevents import KafkaRecord

# Partition counts are read again this often: a topic may gain partitions.
PARTITIONS_TTL = 30.0
_KEY_CACHE = 4096


class _Batch:
    __slots__ = ("builder", "done")

    def __init__(self, builder: BatchBuilder, done: asyncio.Future[None]) -> None:
        self.builder = builder
        self.done = done


class _Partition:
    """The batch filling up for one partition, and whether one is on its way."""

    __slots__ = ("busy", "open")

    def __init__(self) -> None:
        self.open: _Batch | None = None
        self.busy = False


class RecordWriter:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._slots: dict[tuple[str, int], _Partition] = {}
        self._partitions: dict[str, tuple[int, float]] = {}
        self._hashes: dict[bytes, int] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def write(self, topic: str, record: KafkaRecord) -> asyncio.Future[None]:
        """Queue ``record``; the returned future resolves once the broker has it (acks=all)."""
        done = self.write_nowait(topic, record)
        if done is None:
            await self._partition_count(topic)
            done = self.write_nowait(topic, record)
            if done is None:  # larger than any batch: alone
                partition = None
                if isinstance(record, PinnedRecord):
                    partition = record.partition % await self._partition_count(topic)
                return await self._producer.send(  # type: ignore[no-any-return]
                    topic, record.value, key=record.key, headers=record.headers, partition=partition
                )
        # Shielded: a cancelled writer must not cancel the batch under the others.
        return asyncio.shield(done)

    def write_nowait(self, topic: str, record: KafkaRecord) -> asyncio.Future[None] | None:
        """Queue ``record`` without waiting: its batch's future, shared with the batch's
        other records (add callbacks; do not cancel it), or None when the topic's
        partitions are not known yet or the record is larger than a batch (use write)."""
        known = self._partitions.get(topic)
        if known is None or time.monotonic() >= known[1]:
            return None
        if type(record) is PinnedRecord:
            slot = (topic, record.partition % known[0])
        else:
            slot = (topic, self._partition(record.key, known[0]))
        part = self._slots.get(slot)
        if part is None:
            part = self._slots[slot] = _Partition()
        batch = part.open
        if batch is None:
            batch = part.open = self._new_batch()
            if not part.busy:
                # Whatever else this loop tick writes joins the batch before it goes.
                part.busy = True
                asyncio.get_running_loop().call_soon(self._submit, slot, part)
        if not self._append(batch.builder, record):
            # Full: it goes now, on its own, and the record starts the next one.
            self._send(slot, batch)
            batch = part.open = self._new_batch()
            if not self._append(batch.builder, record):
                part.open = None
                return None
        return batch.done

    def _submit(self, slot: tuple[str, int], part: _Partition) -> None:
        """Send the partition's open batch; while it is on its way, the next one fills."""
        batch, part.open = part.open, None
        if batch is None:
            part.busy = False
            return
        part.busy = True
        self._send(slot, batch, part)

    def _new_batch(self) -> _Batch:
        return _Batch(self._producer.create_batch(), asyncio.get_running_loop().create_future())

    @staticmethod
    def _append(builder: BatchBuilder, record: KafkaRecord) -> bool:
        meta = builder.append(
            timestamp=None, key=record.key, value=record.value, headers=record.headers
        )
        return meta is not None

    def _partition(self, key: bytes | None, count: int) -> int:
        if key is None:
            return 0
        digest = self._hashes.get(key)
        if digest is None:
            if len(self._hashes) >= _KEY_CACHE:
                self._hashes.clear()
            digest = self._hashes[key] = key_hash(key)
        return digest % count

    async def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has (read again every ``PARTITIONS_TTL`` seconds)."""
        return await self._partition_count(topic)

    async def _partition_count(self, topic: str) -> int:
        known = self._partitions.get(topic)
        now = time.monotonic()
        if known is not None and now < known[1]:
            return known[0]
        count = len(await self._producer.partitions_for(topic))
        self._partitions[topic] = (count, now + PARTITIONS_TTL)
        return count

    def _send(self, slot: tuple[str, int], batch: _Batch, part: _Partition | None = None) -> None:
        task = asyncio.create_task(self._deliver(slot, batch, part))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, slot: tuple[str, int], batch: _Batch, part: _Partition | None) -> None:
        topic, partition = slot
        try:
            acked = await self._producer.send_batch(batch.builder, topic, partition=partition)
            await acked
        except Exception as exc:  # every writer of the batch sees it and writes again
            if not batch.done.done():
                batch.done.set_exception(exc)
            # Retrieved here as well: a batch whose writers were all cancelled
            # must not log "exception never retrieved".
            with contextlib.suppress(Exception):
                batch.done.result()
        else:
            if not batch.done.done():
                batch.done.set_result(None)
        finally:
            if part is not None:
                # What gathered while this batch was on its way goes next.
                self._submit(slot, part)
