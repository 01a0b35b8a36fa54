"""Reading one topic's committed records on, from where the last read stopped."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import kafka_client_options, topic_partitions


class TopicTail:
    """Every committed record of one topic, read on from where the last call stopped."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.last: dict[int, int] = {}  # partition: offset of its last data record
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    async def read(self, timeout: float = 30.0) -> list[Any]:
        """The records written since the last call, up to the end offsets seen now."""
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                **kafka_client_options(),
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                max_partition_fetch_bytes=8 * 1024 * 1024,
            )
            await self._consumer.start()
            parts = await topic_partitions(self.bootstrap, self.topic)
            self._tps = [TopicPartition(self.topic, p) for p in parts]
            self._consumer.assign(self._tps)
            await self._consumer.seek_to_beginning(*self._tps)
        consumer = self._consumer
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        ends = await consumer.end_offsets(self._tps)
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in self._tps}
            if all(positions[tp] >= ends[tp] for tp in self._tps):
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, records in batch.items():
                out.extend(records)
                if records:
                    self.last[tp.partition] = records[-1].offset
        return out

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
