"""The one consumer runner: fetch, back off, hold partitions, follow rebalances, commit.

Every consuming component (the dispatcher's transactional loop, delivery's intake and
retry tiers, the topic followers behind the in-memory views) says what its records
mean through :class:`ConsumerHooks`; a :class:`ConsumerRunner` owns the aiokafka
consumer and the task that fetches for it.

Lifecycle:

* start (``__aenter__``): the consumer starts, then either subscribes to ``topics`` in
  the group ``group_id`` or is assigned ``partitions`` (no group, every process its own
  reader), sought to their beginning and handed to :meth:`ConsumerHooks.assigned`;
  then the fetch task begins.
* run: one ``getmany`` at a time; every round, an empty one too, goes to
  :meth:`ConsumerHooks.handle` with the batch lock held. A fetch that fails is tried
  again after a backoff that doubles up to ``max_backoff``; its cause is logged, at
  most one line per ``log_every`` seconds. Partitions held by the component
  (:meth:`ConsumerRunner.hold_until`, :meth:`ConsumerRunner.hold_while`) are resumed
  when their time comes or their condition clears. About every ``commit_interval``
  seconds the offsets :meth:`ConsumerHooks.committable` names are committed.
* stop (:meth:`ConsumerRunner.stop`): no new fetch; the round in hand finishes.
* drain (:meth:`ConsumerRunner.drain`): :meth:`ConsumerHooks.drain` within a grace,
  then a last commit. Leaving the block stops, drains (no grace) unless that was done,
  and closes the consumer.

Rebalances: both callbacks wait for the round in hand (the batch lock). A revocation
commits the revoked partitions' offsets, then tells the hooks. A batch fetched before
a rebalance is dropped, and its partitions sought back to their committed offsets.

A component that puts its offsets elsewhere (a transaction) returns none from
:meth:`ConsumerHooks.committable`, and the runner commits nothing. A ``handle`` that
raises ends the run: the runner logs it, keeps it as :attr:`ConsumerRunner.failure`,
and :attr:`ConsumerRunner.running` turns False (readiness reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from shared.kafka import create_consumer
from shared.logging import LogEvery

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Batch: TypeAlias = dict[TopicPartition, list[Record]]


class ConsumerHooks:
    """What a consuming component tells its runner; every hook but :meth:`handle` may stay."""

    async def handle(self, batch: Batch) -> None:
        """Take one fetched round (possibly empty), in offset order per partition."""
        raise NotImplementedError

    async def assigned(self, tps: set[TopicPartition]) -> None:
        """Partitions now this component's (after a rebalance, or once at start)."""

    async def revoked(self, tps: set[TopicPartition]) -> None:
        """Partitions taken away; their offsets were committed just before."""

    def committable(self, tps: set[TopicPartition] | None) -> dict[TopicPartition, int]:
        """Offsets to commit now (of ``tps``, or of every partition when None)."""
        return {}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """``offsets`` were committed."""

    async def drain(self, deadline: float) -> None:
        """Finish the work in hand by ``deadline`` (``time.monotonic``); fetching has stopped."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.partitions_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.partitions_assigned(set(assigned))


class ConsumerRunner:
    """Fetches for one component: ``topics`` in a group, or ``partitions`` without one."""

    def __init__(
        self,
        bootstrap_servers: str,
        hooks: ConsumerHooks,
        *,
        client_id: str,
        topics: Sequence[str] = (),
        group_id: str | None = None,
        partitions: Sequence[TopicPartition] = (),
        poll_timeout: float = 0.1,
        max_records: int = 500,
        commit_interval: float = 1.0,
        backoff: float = 0.5,
        max_backoff: float = 5.0,
        log_every: float = 10.0,
        **consumer_options: Any,
    ) -> None:
        if bool(topics) == bool(partitions) or bool(topics) != (group_id is not None):
            raise ValueError("give topics with a group_id, or partitions without one")
        self._bootstrap = bootstrap_servers
        self._hooks = hooks
        self._client_id = client_id
        self._topics = list(topics)
        self._group_id = group_id
        self._partitions = list(partitions)
        self._poll_ms = int(poll_timeout * 1000)
        self._max_records = max_records
        self._commit_interval = commit_interval
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._fetch_failures = LogEvery(log_every)
        self._commit_failures = LogEvery(log_every)
        self._options = consumer_options
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._batch_lock = asyncio.Lock()
        self._generation = 0
        self._fetching = False
        self._stopping = False
        self._drained = False
        self._until: dict[TopicPartition, float] = {}
        self._while: dict[TopicPartition, Callable[[], bool]] = {}
        self._last_commit = time.monotonic()
        self.failure: BaseException | None = None
        self.joined = asyncio.Event()

    @property
    def name(self) -> str:
        return self._client_id

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        consumer = create_consumer(
            self._bootstrap,
            group_id=self._group_id,
            client_id=self._client_id,
            max_poll_records=self._max_records,
            **self._options,
        )
        try:
            await consumer.start()
            self._consumer = consumer
            if self._topics:
                consumer.subscribe(self._topics, listener=_Rebalance(self))
            else:
                consumer.assign(self._partitions)
                await consumer.seek_to_beginning(*self._partitions)
                await self._hooks.assigned(set(self._partitions))
                self.joined.set()
        except BaseException:
            self._consumer = None
            await consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(), name=f"consume-{self._client_id}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        if not self._drained:
            await self.drain(0.0)
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # aiokafka's fetcher awaits the fetch it cancels and lets that
                # cancellation out of stop() (a fetch in its retry backoff): not ours.
                log.debug("consumer stopped", extra={"consumer": self.name})

    def stop_fetching(self) -> None:
        """Fetch nothing more; the round in hand still finishes (see :meth:`stop`)."""
        self._stopping = True
        if self._fetching and self._task is not None:
            self._task.cancel()  # only a fetch is cut short, never a round in hand

    async def stop(self) -> None:
        """Fetch nothing more and wait for the round in hand."""
        self.stop_fetching()
        await self.wait_stopped()

    async def wait_stopped(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({self._task})

    async def drain(self, grace: float) -> None:
        """Let the component finish within ``grace`` seconds, then commit what it settled."""
        self._drained = True
        await self._hooks.drain(time.monotonic() + grace)
        await self.commit()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- what components may ask ----------------------------------------------------------

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        self._consumer.seek(tp, offset)

    async def position(self, tp: TopicPartition) -> int:
        assert self._consumer is not None
        return int(await self._consumer.position(tp))

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        return dict(await self._consumer.end_offsets(list(tps)))

    async def seek_to_committed(self, tps: Sequence[TopicPartition]) -> None:
        """Read ``tps`` again from their committed offsets (the beginning if none)."""
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        for tp in tps:
            if tp not in assigned:
                continue
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    def hold_until(self, tp: TopicPartition, offset: int, when: float) -> None:
        """Pause ``tp`` with ``offset`` as its next record until ``when`` (monotonic)."""
        self._hold(tp, offset)
        self._until[tp] = when

    def hold_while(self, tp: TopicPartition, offset: int, blocked: Callable[[], bool]) -> None:
        """Pause ``tp`` with ``offset`` as its next record while ``blocked()`` (backpressure)."""
        self._hold(tp, offset)
        self._while[tp] = blocked

    def held(self, tp: TopicPartition) -> bool:
        return tp in self._until or tp in self._while

    def _hold(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        self._consumer.seek(tp, offset)
        self._consumer.pause(tp)

    async def commit(self, tps: set[TopicPartition] | None = None) -> None:
        """Commit what the component says may be committed (of ``tps``, or of all)."""
        self._last_commit = time.monotonic()
        if self._group_id is None:
            return  # without a group there is nowhere to commit
        offsets = self._hooks.committable(tps)
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            left_out = self._commit_failures.due()
            if left_out is not None:
                log.warning(
                    "offset commit failed; the next one carries these offsets",
                    extra={"consumer": self.name, "error": repr(exc), "left_out": left_out},
                )
            return
        self._hooks.committed(offsets)

    # -- rebalances -----------------------------------------------------------------------

    async def partitions_revoked(self, tps: set[TopicPartition]) -> None:
        async with self._batch_lock:
            self._generation += 1
            await self.commit(tps)
            await self._hooks.revoked(tps)
            for tp in tps:
                self._until.pop(tp, None)
                self._while.pop(tp, None)

    async def partitions_assigned(self, tps: set[TopicPartition]) -> None:
        async with self._batch_lock:
            self._generation += 1
            await self._hooks.assigned(tps)
        self.joined.set()

    # -- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        backoff = self._backoff
        try:
            while not self._stopping:
                generation = self._generation
                self._fetching = True
                try:
                    batch = await consumer.getmany(
                        timeout_ms=self._poll_ms, max_records=self._max_records
                    )
                except KafkaError as exc:
                    self._fetch_failed(exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                finally:
                    self._fetching = False
                backoff = self._backoff
                async with self._batch_lock:
                    if batch and generation != self._generation:
                        # A rebalance came between the fetch and now: these may be stale.
                        await self.seek_to_committed(list(batch))
                        continue
                    await self._hooks.handle(batch)
                if self._until or self._while:
                    self._release_holds()
                if time.monotonic() - self._last_commit >= self._commit_interval:
                    await self.commit()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except Exception as exc:
            log.exception("consumer stopped on a failure", extra={"consumer": self.name})
            self.failure = exc

    def _fetch_failed(self, exc: KafkaError, backoff: float) -> None:
        left_out = self._fetch_failures.due()
        if left_out is not None:
            log.warning(
                "fetch failed; retrying",
                extra={
                    "consumer": self.name,
                    "error": repr(exc),
                    "retry_in": backoff,
                    "left_out": left_out,
                },
            )

    def _release_holds(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        now = time.monotonic()
        for tp, until in list(self._until.items()):
            if until <= now:
                del self._until[tp]
                if tp not in self._while:
                    consumer.resume(tp)
        for tp, blocked in list(self._while.items()):
            if not blocked():
                del self._while[tp]
                if tp not in self._until:
                    consumer.resume(tp)
