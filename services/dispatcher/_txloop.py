"""The transactional read-process-write loop the dispatcher and the local engine share.

Lifecycle:

* start (``__aenter__``): the transactional producer starts first — its
  ``init_transactions`` fences a predecessor with the same transactional id and
  aborts whatever that predecessor left open — then the consumer runner
  (:mod:`shared.consumer`) joins the group (``read_committed``, no auto-commit) and
  starts fetching. The runner commits nothing: the offsets are the transaction's.
* run: one consumed batch = one transaction. Every output of the batch, the
  dead letters included, and the batch's offsets go into it; each step is
  awaited before the next (aiokafka#1098). A failed batch is aborted, the
  partitions are rewound to the batch's first records, and it is tried again.
* stop (:meth:`stop`, or ``__aexit__``): no new fetch; the batch in hand
  finishes its transaction (drain); then the consumer leaves and the producer
  stops.

Rebalances (the runner's rule): the revoke callback waits for the batch in hand, so a
partition is never handed over with a transaction open on it; a batch fetched before a
rebalance is dropped (its records come back from the committed offsets). A fenced
producer stops the loop (:attr:`TransactionalLoop.failure`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.structs import ConsumerRecord, RecordMetadata

from shared.cloudevents import KafkaRecord
from shared.consumer import Batch, ConsumerHooks, ConsumerRunner
from shared.deadletter import DeadLetters
from shared.errors import PoisonMessage
from shared.kafka import create_producer

log = logging.getLogger(__name__)


class Outbox:
    """The sends of one transaction; :meth:`flush` awaits their acknowledgements."""

    def __init__(self, producer: AIOKafkaProducer, dead_letters: DeadLetters) -> None:
        self._producer = producer
        self._dead_letters = dead_letters
        self._pending: list[Awaitable[RecordMetadata]] = []
        self.sent = 0

    async def send(self, topic: str, record: KafkaRecord, *, partition: int | None = None) -> None:
        future = await self._producer.send(
            topic, record.value, key=record.key, headers=record.headers, partition=partition
        )
        self._pending.append(future)
        self.sent += 1

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], error: PoisonMessage) -> None:
        log.warning(
            "record sent to dead-letter topic",
            extra={
                "reason": error.reason,
                "code": error.reason_code,
                "source_topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
        )
        headers = self._dead_letters.record_headers(
            headers=list(record.headers or ()),
            reason=error.reason,
            code=error.reason_code,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        await self.send(self._dead_letters.topic, KafkaRecord(record.key, record.value, headers))

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            await future


class _Transactions(ConsumerHooks):
    """The runner's hooks: each fetched batch is one transaction, offsets included."""

    def __init__(self, loop: TransactionalLoop) -> None:
        self._loop = loop

    async def handle(self, batch: Batch) -> None:
        if batch:
            await self._loop._transact(batch)

    async def assigned(self, tps: set[TopicPartition]) -> None:
        await self._loop.partitions_assigned(list(tps))

    async def revoked(self, tps: set[TopicPartition]) -> None:
        await self._loop.partitions_revoked(list(tps))

    # The offsets go into each batch's transaction: nothing for the runner to commit.


class TransactionalLoop:
    """Consume ``topic`` in group ``group_id``; subclasses say what each batch produces."""

    service = "hookline"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str,
        dlq_topic: str,
        group_id: str,
        transactional_id: str,
        max_batch: int = 500,
        poll_timeout: float = 0.2,
        retry_backoff: float = 1.0,
        transaction_timeout: float = 60.0,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._group_id = group_id
        self._transactional_id = transactional_id
        self._retry_backoff = retry_backoff
        self._producer = create_producer(
            bootstrap_servers,
            client_id=f"hookline-{self.service}",
            transactional_id=transactional_id,
            transaction_timeout_ms=int(transaction_timeout * 1000),
        )
        self._dead_letters = DeadLetters(self._producer, dlq_topic, service=self.service)
        self._runner = ConsumerRunner(
            bootstrap_servers,
            _Transactions(self),
            client_id=f"hookline-{self.service}",
            topics=[topic],
            group_id=group_id,
            max_records=max_batch,
            poll_timeout=poll_timeout,
            backoff=retry_backoff,
        )
        self._failure: BaseException | None = None
        self.committed_batches = 0

    # -- hooks for subclasses ------------------------------------------------------------

    async def partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Called with no batch in progress; load per-partition state here."""

    async def partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Called with no batch in progress; drop per-partition state here."""

    async def process(
        self, outbox: Outbox, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        raise NotImplementedError

    def committed(self) -> None:
        """The batch's transaction committed: make its in-memory effects permanent."""

    def aborted(self) -> None:
        """The batch's transaction was aborted: forget its in-memory effects."""

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._producer.start()
        try:
            await self._runner.__aenter__()
        except BaseException:
            await self._producer.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._runner.__aexit__(et, e, tb)
        await self._producer.stop()

    def stop(self) -> None:
        """Fetch nothing more; the batch in hand still commits."""
        self._runner.stop_fetching()

    @property
    def running(self) -> bool:
        return self._runner.running

    @property
    def failure(self) -> BaseException | None:
        return self._failure or self._runner.failure

    async def wait_stopped(self) -> None:
        await self._runner.wait_stopped()

    def assignment(self) -> set[TopicPartition]:
        return self._runner.assignment()

    # -- one batch ------------------------------------------------------------------------

    async def _transact(self, batch: Batch) -> None:
        producer = self._producer
        await producer.begin_transaction()
        outbox = Outbox(producer, self._dead_letters)
        try:
            await self.process(outbox, batch)
            await outbox.flush()
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
            await producer.send_offsets_to_transaction(offsets, self._group_id)
            await producer.commit_transaction()
        except ProducerFenced as exc:
            self.aborted()
            log.error(
                "another instance took over this transactional id; stopping",
                extra={"transactional_id": self._transactional_id},
            )
            self._failure = exc
            self._runner.stop_fetching()
            return
        except Exception as exc:
            log.warning(
                "batch failed; aborting its transaction and retrying",
                extra={"error": repr(exc), "records": sum(len(r) for r in batch.values())},
            )
            self.aborted()
            await producer.abort_transaction()
            self._rewind(batch)
            await asyncio.sleep(self._retry_backoff)
            return
        self.committed()
        self.committed_batches += 1

    def _rewind(self, batch: Batch) -> None:
        assigned = self._runner.assignment()
        for tp, records in batch.items():
            if records and tp in assigned:
                self._runner.seek(tp, records[0].offset)


def batch_records(
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> Sequence[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]:
    return [(tp, record) for tp, records in batch.items() for record in records]


__all__ = ["Outbox", "TransactionalLoop", "batch_records"]
