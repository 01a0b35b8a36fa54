"""A source of due deliveries: one topic read in a group, its records taken and committed.

The shared consumer runner (:mod:`shared.consumer`) fetches; this is its hooks for
the intake and the retry tiers. Each record a subclass takes (:meth:`take`) is
noted in its partition's ledger with the number of deliveries still to settle; a
partition whose unsettled records reach ``max_unsettled`` is held until they fall
below it. Offsets are committed about once a second, on revocation and at the end,
only up to the lowest unsettled record (:mod:`._commit`).

Lifecycle: ``async with`` joins the group and starts fetching; :meth:`stop` stops
fetching; ``runner.drain`` commits what settled (the owner drains the deliveries in
flight in between); leaving the block does what is left and closes the consumer.
A step of the intake that raises sends its record to the dlq and goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Self

from aiokafka import TopicPartition

from services.delivery._admit import Admission
from services.delivery._commit import OffsetBook, Overdue, PartitionLedger
from services.delivery._metrics import UNSETTLED
from shared.consumer import Batch, ConsumerHooks, ConsumerRunner, Record
from shared.deadletter import DeadLetters

log = logging.getLogger(__name__)


class RecordSource(ConsumerHooks):
    """Fetches one topic for a group; subclasses say what one record means in :meth:`take`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        name: str,
        group_id: str,
        max_unsettled: int,
        admission: Admission,
        dead_letters: DeadLetters,
        commit_interval: float = 1.0,
        max_records: int = 500,
        on_assignment: Callable[[str, int], None] | None = None,
    ) -> None:
        self.name = name
        self._on_assignment = on_assignment
        self.topic = topic
        self.admission = admission
        self.dead_letters = dead_letters
        self.book = OffsetBook()
        self.max_unsettled_seen = 0
        self._max_unsettled = max_unsettled
        self.runner = ConsumerRunner(
            bootstrap,
            self,
            client_id=f"hookline-delivery-{name}",
            topics=[topic],
            group_id=group_id,
            max_records=max_records,
            commit_interval=commit_interval,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.runner.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.runner.__aexit__(et, e, tb)

    async def stop(self) -> None:
        """Stop fetching; deliveries already started go on."""
        await self.runner.stop()

    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def joined(self) -> asyncio.Event:
        return self.runner.joined

    def overdue(self, max_age: float) -> list[Overdue]:
        return self.book.overdue(max_age)

    # -- what a record means --------------------------------------------------------------

    async def take(self, tp: TopicPartition, ledger: PartitionLedger, record: Record) -> bool:
        """Take one record; return False to stop reading this partition's batch."""
        raise NotImplementedError

    # -- the runner's hooks ---------------------------------------------------------------

    async def handle(self, batch: Batch) -> None:
        runner = self.runner
        for tp, records in batch.items():
            ledger = self.book.ledger(tp)
            if ledger is None:
                continue
            for record in records:
                if runner.stopping or runner.held(tp):
                    break
                if ledger.unsettled >= self._max_unsettled:
                    runner.hold_while(tp, record.offset, partial(self._full, ledger))
                    break
                try:
                    go_on = await self.take(tp, ledger, record)
                except Exception as exc:
                    await self._divert(ledger, record, exc)
                    continue
                if not go_on:
                    break
            if ledger.unsettled > self.max_unsettled_seen:
                self.max_unsettled_seen = ledger.unsettled

    def _full(self, ledger: PartitionLedger) -> bool:
        return ledger.unsettled >= self._max_unsettled

    async def _divert(self, ledger: PartitionLedger, record: Record, exc: Exception) -> None:
        """A step raised before any delivery of ``record`` started: to the dlq, settled."""
        log.error(
            "taking a record failed; it goes to the dead-letter topic",
            exc_info=exc,
            extra={"consumer": self.name, "partition": record.partition, "offset": record.offset},
        )
        await self.dead_letters.send(
            key=record.key,
            value=record.value,
            headers=record.headers,
            error=f"delivery could not take this record: {exc!r}",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        ledger.take(record.offset, 0)

    async def assigned(self, tps: set[TopicPartition]) -> None:
        self.book.assign(tps)
        if self._on_assignment is not None:
            self._on_assignment(self.topic, self.book.owned)

    async def revoked(self, tps: set[TopicPartition]) -> None:
        self.book.revoke(tps)
        if self._on_assignment is not None:
            self._on_assignment(self.topic, self.book.owned)

    def committable(self, tps: set[TopicPartition] | None) -> dict[TopicPartition, int]:
        for tp, count in self.book.unsettled().items():
            UNSETTLED.labels(f"{self.name}/{tp.partition}").set(count)
        return self.book.to_commit(tps)

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self.book.committed(offsets)
