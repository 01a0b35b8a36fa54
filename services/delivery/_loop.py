"""The consumer loop both kinds of input share: fetch, hand records to a step, commit.

Lifecycle: ``async with`` joins the group and starts fetching; :meth:`stop`
stops fetching; :meth:`drain` waits (up to a grace period) for the deliveries in
flight, cancels what is left and commits; leaving the block does all three and
closes the consumer. Offsets are committed about once a second, on revocation
and at the end, and only up to the lowest record not yet settled. A partition
whose unsettled records reach the bound is paused until they fall below it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from functools import partial
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from services.delivery._attempts import Deliverer, Queued, Write
from services.delivery._codec import Due
from services.delivery._metrics import UNSETTLED
from services.delivery._offsets import OffsetBook, PartitionLedger
from shared.kafka import create_consumer

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._loop.assigned(set(assigned))


class ConsumerLoop:
    """Fetches one topic for a group; subclasses say what one record means in :meth:`handle`."""

    name = "consumer"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        group_id: str,
        max_unsettled: int,
        deliverer: Deliverer,
        commit_interval: float = 1.0,
        max_records: int = 500,
    ) -> None:
        self.topic = topic
        self.deliverer = deliverer
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._max_unsettled = max_unsettled
        self._commit_interval = commit_interval
        self._max_records = max_records
        self.book = OffsetBook()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        # Each delivery task and its step: a step whose task was cancelled before it
        # started is closed at drain, so it is not reported as never awaited.
        self._in_flight: dict[asyncio.Task[None], Coroutine[Any, Any, Queued | None]] = {}
        # The batch acknowledgements that hand-ons queued without a task wait for.
        self._writes: set[asyncio.Future[None]] = set()
        self._backpressured: set[TopicPartition] = set()
        self._held_until: dict[TopicPartition, float] = {}
        self._stopping = False
        self._last_commit = time.monotonic()
        self.max_unsettled_seen = 0
        self.joined = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        consumer = create_consumer(
            self._bootstrap,
            group_id=self._group_id,
            client_id=f"hookline-delivery-{self.name}",
            max_poll_records=self._max_records,
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"delivery-{self.name}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        await self.drain(0.0)
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def stop(self) -> None:
        """Stop fetching; deliveries already started go on."""
        self._stopping = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for in-flight deliveries, cancel the rest, commit."""
        deadline = time.monotonic() + grace
        # Deliveries first (they may queue writes as they end), then the queued writes'
        # acknowledgements, then what a failed write started again; within the grace.
        for pending in (self._in_flight, self._writes, self._in_flight):
            left = deadline - time.monotonic()
            if pending and left > 0:
                await asyncio.wait(set(pending), timeout=left)
        leftovers = dict(self._in_flight)
        for task in leftovers:
            task.cancel()
        if leftovers:
            log.warning(
                "deliveries still in flight at shutdown; their records stay uncommitted",
                extra={"consumer": self.name, "count": len(leftovers)},
            )
            await asyncio.gather(*leftovers, return_exceptions=True)
            for task, work in leftovers.items():
                work.close()
                self._in_flight.pop(task, None)
        await self.commit()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- rebalance ------------------------------------------------------------------------

    def assigned(self, tps: set[TopicPartition]) -> None:
        self.book.assign(tps)
        self.joined.set()

    async def revoked(self, tps: set[TopicPartition]) -> None:
        await self.commit(tps)
        self.book.revoke(tps)
        self._backpressured -= tps
        for tp in tps:
            self._held_until.pop(tp, None)

    # -- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while not self._stopping:
            try:
                batches = await consumer.getmany(timeout_ms=100, max_records=self._max_records)
            except KafkaError as exc:
                log.warning(
                    "fetch failed; retrying", extra={"consumer": self.name, "error": repr(exc)}
                )
                await asyncio.sleep(0.5)
                continue
            for tp, records in batches.items():
                ledger = self.book.ledger(tp)
                if ledger is None:
                    continue
                for record in records:
                    if self._stopping or tp in self._held_until:
                        break
                    if ledger.unsettled >= self._max_unsettled:
                        consumer.seek(tp, record.offset)
                        self._pause(tp)
                        self._backpressured.add(tp)
                        break
                    if not await self.handle(tp, ledger, record):
                        break
                self.max_unsettled_seen = max(self.max_unsettled_seen, ledger.unsettled)
            self._release_paused()
            if time.monotonic() - self._last_commit >= self._commit_interval:
                await self.commit()

    async def handle(self, tp: TopicPartition, ledger: PartitionLedger, record: Any) -> bool:
        """Take one record; return False to stop reading this partition's batch."""
        raise NotImplementedError

    async def start(self, ledger: PartitionLedger, offset: int, due: Due) -> None:
        """Start one delivery of the record at ``offset``.

        A subscription whose breaker is open costs the least it can: its hand-on is
        queued at once and the record settles from the write's acknowledgement, without
        a task of its own (a dead receiver's deliveries must not take the CPU the live
        ones need); only if that write fails does a task write it again.
        """
        deliverer = self.deliverer
        if deliverer.breakers.blocked(due.subscription_id):
            writes = deliverer.skip_writes(due)
            queued = deliverer.queue(writes)
            if queued is None:
                self.spawn(ledger, offset, deliverer.write_durably(writes))
            else:
                self._settle_when(ledger, offset, queued)
            return
        step = await deliverer.step_for(due.subscription_id)
        self.spawn(ledger, offset, step(due))

    def _settle_when(self, ledger: PartitionLedger, offset: int, queued: Queued) -> None:
        """Settle ``offset`` once the queued write is acknowledged (drain waits for it)."""
        written = queued.written
        if written not in self._writes:
            self._writes.add(written)
            written.add_done_callback(self._writes.discard)
        written.add_done_callback(partial(self._written, ledger, offset, queued.writes))

    def _written(
        self, ledger: PartitionLedger, offset: int, writes: list[Write], done: asyncio.Future[None]
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            self.spawn(ledger, offset, self.deliverer.write_durably(writes))
        else:
            ledger.settle(offset)

    def spawn(
        self, ledger: PartitionLedger, offset: int, work: Coroutine[Any, Any, Queued | None]
    ) -> None:
        """Run one delivery of the record at ``offset``; settle it when it completes."""
        task = asyncio.create_task(self._settle_after(ledger, offset, work))
        self._in_flight[task] = work

    async def _settle_after(
        self, ledger: PartitionLedger, offset: int, work: Coroutine[Any, Any, Queued | None]
    ) -> None:
        try:
            queued = await work
        except asyncio.CancelledError:
            raise
        except Exception:
            # Unsettled on purpose: the record is read again after a restart.
            log.exception("delivery step failed", extra={"consumer": self.name})
            return
        finally:
            # Here rather than a done callback: one scheduled callback fewer per delivery.
            # A task cancelled before it started never gets here; drain forgets those.
            self._in_flight.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        if queued is None:
            ledger.settle(offset)
        else:
            self._settle_when(ledger, offset, queued)

    def hold(self, tp: TopicPartition, offset: int, until: float) -> None:
        """Pause ``tp`` with ``offset`` as its next record until ``until`` (monotonic)."""
        assert self._consumer is not None
        self._consumer.seek(tp, offset)
        self._pause(tp)
        self._held_until[tp] = until

    def _pause(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        self._consumer.pause(tp)

    def _release_paused(self) -> None:
        assert self._consumer is not None
        now = time.monotonic()
        for tp, until in list(self._held_until.items()):
            if until <= now:
                del self._held_until[tp]
                if tp not in self._backpressured:
                    self._consumer.resume(tp)
        for tp in list(self._backpressured):
            ledger = self.book.ledger(tp)
            if ledger is None or ledger.unsettled < self._max_unsettled:
                self._backpressured.discard(tp)
                if tp not in self._held_until:
                    self._consumer.resume(tp)

    async def commit(self, tps: set[TopicPartition] | None = None) -> None:
        self._last_commit = time.monotonic()
        for tp, count in self.book.unsettled().items():
            UNSETTLED.labels(f"{self.name}/{tp.partition}").set(count)
        offsets = self.book.to_commit(tps)
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("offset commit failed", extra={"consumer": self.name, "error": repr(exc)})
            return
        self.book.committed(offsets)
