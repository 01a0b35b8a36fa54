"""A topic read from its beginning and then followed: the base of every in-memory view.

Lifecycle: ``async with`` assigns every partition (no consumer group: each
process keeps its own copy), seeks to the beginning and notes the end offsets;
the consumer runner (:mod:`shared.consumer`) then fetches, and the records are
applied in order. :meth:`TopicFollower.wait_ready` returns once everything up to
those end offsets is applied, and :meth:`TopicFollower.wait_for` once a given
record is (read your writes). Subclasses implement :meth:`TopicFollower.apply`;
it must not raise for bad records, since the view must never stop on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from shared.consumer import Batch, ConsumerHooks, ConsumerRunner
from shared.errors import BrokerUnavailable
from shared.kafka import topic_partitions

log = logging.getLogger(__name__)


class TopicFollower(ConsumerHooks):
    """Reads ``topic`` from the beginning, then follows it; subclasses apply records."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        client_id: str,
        poll_timeout: float = 0.2,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._client_id = client_id
        self._poll_timeout = poll_timeout
        self._applied: dict[int, int] = {}
        self._start_end: dict[int, int] = {}
        self._ready = asyncio.Event()
        self._progress = asyncio.Condition()
        self._runner: ConsumerRunner | None = None

    async def apply(self, record: Any) -> None:
        """Apply one consumed record to the view (records arrive in offset order)."""
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        partitions = await topic_partitions(self._bootstrap, self._topic)
        if not partitions:
            raise BrokerUnavailable(f"topic {self._topic} does not exist")
        runner = ConsumerRunner(
            self._bootstrap,
            self,
            client_id=self._client_id,
            partitions=[TopicPartition(self._topic, p) for p in partitions],
            poll_timeout=self._poll_timeout,
        )
        self._runner = runner  # the assigned hook reads the end offsets through it
        try:
            await runner.__aenter__()
        except BaseException:
            self._runner = None
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.__aexit__(et, e, tb)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_for(self, partition: int, offset: int, timeout: float = 10.0) -> None:
        """Wait until the record at ``offset`` of ``partition`` has been applied."""
        async with self._progress:
            await asyncio.wait_for(
                self._progress.wait_for(lambda: self._applied.get(partition, 0) > offset),
                timeout,
            )

    # -- the runner's hooks ---------------------------------------------------------------

    async def assigned(self, tps: set[TopicPartition]) -> None:
        runner = self._runner
        assert runner is not None
        ends = await runner.end_offsets(list(tps))
        self._start_end = {tp.partition: off for tp, off in ends.items()}
        self._applied = {tp.partition: 0 for tp in tps}
        self._check_ready()

    async def handle(self, batch: Batch) -> None:
        for tp, records in batch.items():
            for record in records:
                await self.apply(record)
                self._applied[tp.partition] = record.offset + 1
        runner = self._runner
        assert runner is not None
        # Positions move past transaction markers and compacted gaps too.
        for tp in runner.assignment():
            with contextlib.suppress(KafkaError):
                position = await runner.position(tp)
                if position > self._applied.get(tp.partition, 0):
                    self._applied[tp.partition] = position
        self._check_ready()
        async with self._progress:
            self._progress.notify_all()

    def _check_ready(self) -> None:
        if not self._ready.is_set() and all(
            self._applied.get(p, 0) >= end for p, end in self._start_end.items()
        ):
            self._ready.set()
