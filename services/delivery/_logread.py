"""Reading records back by position, outside any consumer group.

The hold store reads its own partitions back when it is assigned them, and reads a
held delivery's event again from its source record when it lets the delivery go. One
consumer per reader, one read at a time; a read of several offsets of a partition is
one pass from the lowest to the highest (records in between are skipped, up to
``max_span`` of them per pass).

Lifecycle: ``async with LogReader(...)`` starts the consumer; leaving stops it.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.consumer import Record
from shared.kafka import create_consumer


class LogReader:
    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str,
        max_span: int = 5000,
        timeout: float = 10.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._max_span = max_span
        self._timeout = timeout
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        consumer = create_consumer(
            self._bootstrap,
            group_id=None,
            client_id=self._client_id,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def read_all(self, tp: TopicPartition) -> list[Record]:
        """Every record of ``tp`` from its beginning to its end as of now."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            out: list[Record] = []
            deadline = time.monotonic() + self._timeout
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {tp.topic}/{tp.partition} back took too long")
                batch = await consumer.getmany(tp, timeout_ms=200)
                out.extend(r for r in batch.get(tp, ()) if r.offset < end)
            return out

    async def read(self, tp: TopicPartition, offsets: list[int]) -> dict[int, Record]:
        """The records at ``offsets`` of ``tp`` that are still there (retention may have
        removed the oldest; an offset past the end is not there either)."""
        consumer = self._consumer
        assert consumer is not None
        wanted = sorted(set(offsets))
        found: dict[int, Record] = {}
        async with self._lock:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            i = 0
            while i < len(wanted):
                start = wanted[i]
                if start >= end:
                    break
                last = start + self._max_span
                consumer.seek(tp, start)
                deadline = time.monotonic() + self._timeout
                position = start
                while position < end and position <= min(last, wanted[-1]):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"reading {tp.topic}/{tp.partition} took too long")
                    batch = await consumer.getmany(tp, timeout_ms=200)
                    for record in batch.get(tp, ()):
                        found[record.offset] = record
                    position = await consumer.position(tp)
                while i < len(wanted) and wanted[i] < position:
                    i += 1
        return {o: found[o] for o in wanted if o in found}
