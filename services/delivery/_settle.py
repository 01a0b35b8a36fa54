"""Settle: the one way a delivery's record settles, once what it writes is durable.

:meth:`Settlement.settle` queues the writes in the writer's open batches (no task:
a callback on the batches' acknowledgements settles the source record), so a
delivery costs no task for its writes. A write that could not be queued, or whose
batch failed, goes to a task that writes it again:

* a retriable failure (aiokafka's ``retriable`` errors: timeouts, not enough
  replicas, a leader that moved, a lost connection) is tried again with a backoff
  that doubles up to ``max_backoff``, its cause logged at most once per
  ``log_every`` seconds;
* anything else (a record too large, an authorization failure, an invalid record,
  a topic still unknown after ``unknown_topic_deadline``) is refused: the delivery
  goes to the dlq instead, ``hookline_error`` saying which write was refused and
  why (code ``write_refused``), and the record settles;
* a write to the dlq itself is never given up (there is nowhere else to put it):
  the record stays unsettled, and readiness names its partition after a while.

A step before this one that raised (:meth:`Settlement.step_failed`) sends the
delivery to the dlq the same way, with the traceback logged.

Lifecycle: :meth:`drain` waits for the acknowledgements and rewrites in hand and
cancels what is left at its deadline (those records stay uncommitted).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError

from services.delivery._codec import Due
from services.delivery._commit import Origin
from services.delivery._record import Write, dead_letter
from services.delivery._writer import RecordWriter
from shared.deadletter import DeadLetters
from shared.logging import LogEvery

log = logging.getLogger(__name__)

Ack = asyncio.Future[None]


def retriable(exc: BaseException) -> bool:
    """Whether writing again may succeed: aiokafka says so, or it was a timeout."""
    if isinstance(exc, TimeoutError | KafkaTimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


class _Acks:
    """Settles one record once every batch holding its writes is acknowledged."""

    __slots__ = ("due", "futures", "ledger", "left", "offset", "settlement", "writes")

    def __init__(
        self,
        settlement: Settlement,
        ledger: Origin,
        offset: int,
        due: Due,
        writes: list[Write],
        futures: list[Ack],
        left: int,
    ) -> None:
        self.settlement = settlement
        self.ledger = ledger
        self.offset = offset
        self.due = due
        self.writes = writes
        self.futures = futures
        self.left = left

    def __call__(self, _: Ack) -> None:
        self.left -= 1
        if self.left:
            return
        futures = self.futures
        if len(futures) == 1:
            done = futures[0]
            if not done.cancelled() and done.exception() is None:
                self.ledger.settle(self.offset)
                return
        failed = [
            (write, future)
            for write, future in zip(self.writes, futures, strict=True)
            if future.cancelled() or future.exception() is not None
        ]
        if not failed:
            self.ledger.settle(self.offset)
            return
        # Written again by a task; the ones acknowledged are not written twice.
        self.settlement.spawn(self.ledger, self.offset, self.due, list(failed))


class Settlement:
    """Makes a delivery's writes durable, then settles its source record."""

    def __init__(
        self,
        writer: RecordWriter,
        dead_letters: DeadLetters,
        *,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        unknown_topic_deadline: float = 30.0,
        log_every: float = 5.0,
    ) -> None:
        self._writer = writer
        self._dead_letters = dead_letters
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._unknown_topic_deadline = unknown_topic_deadline
        self._retrying = LogEvery(log_every)
        self._refusals = LogEvery(log_every)
        self._step_failures = LogEvery(log_every)
        self._acks: set[Ack] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def settle(self, ledger: Origin, offset: int, due: Due, writes: list[Write]) -> None:
        """Settle ``offset`` once ``writes`` are durable (at once when there are none)."""
        if not writes:
            ledger.settle(offset)
            return
        write_nowait = self._writer.write_nowait
        futures: list[Ack] = []
        try:
            for topic, record in writes:
                future = write_nowait(topic, record)
                if future is None:  # partitions not known yet, or larger than a batch
                    break
                futures.append(future)
        except Exception:  # noqa: S110 - the task below writes it again and judges the error
            pass
        if len(futures) < len(writes):
            queued = len(futures)
            pending: list[tuple[Write, Ack | None]] = [
                (write, futures[i] if i < queued else None) for i, write in enumerate(writes)
            ]
            self.spawn(ledger, offset, due, pending)
            return
        distinct = futures if len(futures) == 1 else list(dict.fromkeys(futures))
        acks = _Acks(self, ledger, offset, due, writes, futures, len(distinct))
        pending_acks = self._acks
        for future in distinct:
            if future not in pending_acks:
                pending_acks.add(future)
                future.add_done_callback(pending_acks.discard)
            future.add_done_callback(acks)

    def step_failed(self, due: Due, exc: BaseException) -> list[Write]:
        """A step raised: what the delivery writes instead (the dlq), traceback logged."""
        left_out = self._step_failures.due()
        if left_out is not None:
            log.error(
                "delivery step failed; the delivery goes to the dead-letter topic",
                exc_info=exc,
                extra={"delivery_id": due.delivery_id, "left_out": left_out},
            )
        reason = f"delivery step failed: {exc!r}"
        return [dead_letter(self._dead_letters, due, reason, "delivery_failed")]

    def spawn(
        self,
        ledger: Origin,
        offset: int,
        due: Due,
        pending: list[tuple[Write, Ack | None]],
    ) -> None:
        """Write ``pending`` (a write and its batch's future, if it was queued) in a task."""
        task = asyncio.create_task(self._durably(ledger, offset, due, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _durably(
        self,
        ledger: Origin,
        offset: int,
        due: Due,
        pending: list[tuple[Write, Ack | None]],
    ) -> None:
        backoff = self._backoff
        unknown_since: dict[str, float] = {}
        dead_lettered = False
        while pending:
            again: list[tuple[Write, Ack | None]] = []
            for write, future in pending:
                try:
                    if future is None:
                        future = await self._writer.write(*write)  # shielded
                    elif not future.done():
                        # A batch's future is shared: a cancelled rewrite must not cancel it.
                        future = asyncio.shield(future)
                    await future
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    topic = write[0]
                    if self._keeps_trying(topic, exc, unknown_since):
                        self._log_retry(due, topic, exc, backoff)
                        again.append((write, None))
                    elif not dead_lettered:
                        self._log_refusal(due, topic, exc)
                        reason = f"the broker refused a write to {topic}: {exc!r}"
                        refused = dead_letter(self._dead_letters, due, reason, "write_refused")
                        again.append((refused, None))
                        dead_lettered = True
            pending = again
            if pending:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        ledger.settle(offset)

    def _keeps_trying(
        self, topic: str, exc: BaseException, unknown_since: dict[str, float]
    ) -> bool:
        if topic == self._dead_letters.topic:
            return True  # nowhere else to put it: unsettled, and readiness will say so
        if not retriable(exc):
            return False
        if isinstance(exc, UnknownTopicOrPartitionError):
            since = unknown_since.setdefault(topic, time.monotonic())
            return time.monotonic() - since < self._unknown_topic_deadline
        return True

    def _log_retry(self, due: Due, topic: str, exc: BaseException, backoff: float) -> None:
        left_out = self._retrying.due()
        if left_out is not None:
            log.warning(
                "delivery write not acknowledged; retrying",
                extra={
                    "topic": topic,
                    "error": repr(exc),
                    "delivery_id": due.delivery_id,
                    "retry_in": backoff,
                    "left_out": left_out,
                },
            )

    def _log_refusal(self, due: Due, topic: str, exc: BaseException) -> None:
        left_out = self._refusals.due()
        if left_out is not None:
            log.error(
                "the broker refused a delivery write; the delivery goes to the dead-letter topic",
                extra={
                    "topic": topic,
                    "error": repr(exc),
                    "delivery_id": due.delivery_id,
                    "left_out": left_out,
                },
            )

    async def drain(self, deadline: float) -> None:
        """Wait until ``deadline`` for acknowledgements and rewrites; cancel the rest."""
        for pending in (self._acks, self._tasks):
            left = deadline - time.monotonic()
            if pending and left > 0:
                await asyncio.wait(set(pending), timeout=left)
        leftovers = list(self._tasks)
        for task in leftovers:
            task.cancel()
        if leftovers:
            log.warning(
                "delivery writes still unacknowledged at shutdown; their records stay uncommitted",
                extra={"count": len(leftovers)},
            )
            await asyncio.gather(*leftovers, return_exceptions=True)
