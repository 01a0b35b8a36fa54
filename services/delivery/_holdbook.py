"""The hold store's I/O and clock: entries read back and written, held deliveries let go.

One :class:`HoldBook` per service. For each ``workflow-events`` partition the intake is
assigned it makes a :class:`~services.delivery._holds.HoldPartition` and reads that
partition's entries back from ``delivery-holds`` (the intake takes none of the
partition's records before); on revocation the partition's state is dropped (the next
owner reads it back). It lets a held delivery go when its time comes (one timer task
for all of them), when its subscription is resumed, changed or deleted (a config
listener), or when its chain's turn comes: the event is taken from a bounded cache of
what was held in this process, else read again from its source record, and the
delivery goes to admission with its ticket, at most ``max_releasing`` at a time.

Lifecycle: ``async with HoldBook(...)`` starts its readers and tasks; :meth:`bind`
gives it the admission step; leaving cancels the tasks and stops the readers (what was
held stays on the topic, and comes back after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aiokafka import TopicPartition

from services.delivery._codec import SOURCE, Due, PinnedRecord
from services.delivery._commit import Origin
from services.delivery._holds import Held, HoldPartition, Ticket
from services.delivery._logread import LogReader
from services.delivery._metrics import HELD
from services.delivery._settle import Settlement
from services.delivery._signing import render_body
from shared.cloudevents import decode, decode_any, encode
from shared.config_view import ConfigView
from shared.entities import Entity, Subscription
from shared.errors import PoisonMessage
from shared.messages import DELIVERABLE_EVENTS, DeliveryHeld, SourceRecord

if TYPE_CHECKING:
    from services.delivery._admit import Admission
    from services.delivery._record import Write

log = logging.getLogger(__name__)


class HoldBook:
    def __init__(
        self,
        bootstrap: str,
        *,
        events_topic: str,
        holds_topic: str,
        holds_partitions: int,
        view: ConfigView,
        settlement: Settlement,
        cache_size: int = 10_000,
        max_releasing: int = 256,
    ) -> None:
        self._events_topic = events_topic
        self._holds_topic = holds_topic
        self._holds_partitions = max(1, holds_partitions)
        self._view = view
        self._settlement = settlement
        self._cache: OrderedDict[tuple[int, str], Due] = OrderedDict()
        self._cache_size = cache_size
        self._releasing = asyncio.Semaphore(max_releasing)
        self._entries_reader = LogReader(bootstrap, client_id="hookline-delivery-holds")
        self._events_reader = LogReader(bootstrap, client_id="hookline-delivery-held-events")
        self._parts: dict[TopicPartition, HoldPartition] = {}
        self._admission: Admission | None = None
        self._timers: list[tuple[float, int, HoldPartition, Held]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._released: asyncio.Queue[Ticket] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []

    def bind(self, admission: Admission) -> None:
        self._admission = admission

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._entries_reader.__aenter__()
        await self._events_reader.__aenter__()
        self._view.add_listener(self._changed)
        self._loops = [
            asyncio.create_task(self._clock(), name="holds-clock"),
            asyncio.create_task(self._release_loop(), name="holds-release"),
        ]
        return self

    def stop(self) -> None:
        """Let nothing more go (shutdown: what is held stays held, on the topic)."""
        for task in self._loops:
            task.cancel()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._events_reader.__aexit__(None, None, None)
        await self._entries_reader.__aexit__(None, None, None)

    # -- ownership ------------------------------------------------------------------------

    def assign(self, tp: TopicPartition) -> HoldPartition:
        part = self._parts.get(tp)
        if part is None or part.revoked:
            part = self._parts[tp] = HoldPartition(self, tp)
            self._spawn(self._restore(part))
        return part

    def revoke(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is not None:
                part.revoke()

    def partition(self, tp: TopicPartition) -> HoldPartition | None:
        return self._parts.get(tp)

    def held(self) -> int:
        """How many deliveries the owned partitions hold (tests, readiness detail)."""
        return sum(len(part.entries) for part in self._parts.values())

    async def _restore(self, part: HoldPartition) -> None:
        index = part.tp.partition % self._holds_partitions
        backoff = 0.5
        while not part.revoked:
            try:
                records = await self._entries_reader.read_all(
                    TopicPartition(self._holds_topic, index)
                )
                break
            except Exception as exc:  # the partition stays held until this works
                log.warning(
                    "reading held deliveries back failed; retrying",
                    extra={"partition": part.tp.partition, "error": repr(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        else:
            return
        live: dict[bytes, Held] = {}
        for record in records:
            if record.key is None:
                continue
            if record.value is None:
                live.pop(record.key, None)
                continue
            try:
                entry = decode(list(record.headers or ()), record.value, DeliveryHeld).data
            except PoisonMessage as exc:
                log.warning("skipping an unreadable held delivery", extra={"reason": exc.reason})
                continue
            src = entry.source
            if src.topic != part.tp.topic or src.partition != part.tp.partition:
                continue
            sub = self._view.subscription(entry.subscription_id)
            ordered = sub is not None and sub.ordering == "run"
            live[record.key] = Held(
                entry.subscription_id,
                src.offset,
                entry.run_id if ordered else None,
                entry.attempt,
                entry.first_attempted_at,
                entry.due_at,
                entry.reason,
            )
        if not part.revoked:
            part.restore(list(live.values()))
            if live:
                log.info(
                    "held deliveries read back",
                    extra={"partition": part.tp.partition, "count": len(live)},
                )

    # -- what the partitions ask ----------------------------------------------------------

    def entry_write(self, part: HoldPartition, held: Held) -> Write:
        tp = part.tp
        entry = DeliveryHeld(
            subscription_id=held.subscription_id,
            source=SourceRecord(topic=tp.topic, partition=tp.partition, offset=held.offset),
            run_id=held.run_id,
            attempt=held.attempt,
            first_attempted_at=held.first_attempted_at,
            due_at=held.due_at,
            reason=held.reason,
        )
        record = encode(entry, key=held.key, source=SOURCE)
        HELD.labels(held.reason).inc()
        return self._holds_topic, PinnedRecord(
            record.key, record.value, record.headers, tp.partition % self._holds_partitions
        )

    def tombstone_write(self, part: HoldPartition, held: Held) -> Write:
        index = part.tp.partition % self._holds_partitions
        return self._holds_topic, PinnedRecord(held.key.encode(), None, [], index)

    def write_entry(
        self, origin: Origin, offset: int, due: Due, part: HoldPartition, held: Held
    ) -> None:
        """Hold ``due``; its source record settles once the entry is written."""
        self._settlement.settle(origin, offset, due, [self.entry_write(part, held)])

    def remember(self, part: HoldPartition, held: Held, due: Due) -> None:
        """Keep ``due``'s event at hand for when it is let go (bounded; else read again)."""
        key = (part.tp.partition, held.key)
        self._cache[key] = due if due.ticket is None else _untied(due)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def paused(self, subscription_id: str) -> bool:
        sub = self._view.subscription(subscription_id)
        return sub is not None and sub.enabled and sub.paused

    def arm(self, part: HoldPartition, held: Held) -> None:
        """Let ``held`` go when its time comes; at once when nothing holds it any more."""
        if held.due_at is not None:
            wait = (held.due_at - datetime.now(UTC)).total_seconds()
            heapq.heappush(self._timers, (time.monotonic() + wait, next(self._seq), part, held))
            self._wake.set()
        elif held.reason != "paused" or not self.paused(held.subscription_id):
            part.due(held)

    async def admit(self, origin: Origin, offset: int, due: Due) -> None:
        assert self._admission is not None
        await self._admission.admit(origin, offset, due)

    def spawn_admit(self, origin: Origin, offset: int, due: Due) -> None:
        self._spawn(self.admit(origin, offset, due))

    def release(self, ticket: Ticket) -> None:
        self._released.put_nowait(ticket)

    # -- the clock and the releases -------------------------------------------------------

    async def _clock(self) -> None:
        timers = self._timers
        while True:
            self._wake.clear()
            if not timers:
                await self._wake.wait()
                continue
            wait = timers[0][0] - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            _, _, part, held = heapq.heappop(timers)
            part.due(held)

    async def _release_loop(self) -> None:
        while True:
            batch = [await self._released.get()]
            while not self._released.empty() and len(batch) < 500:
                batch.append(self._released.get_nowait())
            try:
                await self._let_go(batch)
            except Exception:
                log.exception("letting held deliveries go failed", extra={"count": len(batch)})

    async def _let_go(self, tickets: list[Ticket]) -> None:
        missing: dict[TopicPartition, list[int]] = {}
        for ticket in tickets:
            held = ticket.held
            assert held is not None
            if (ticket.part.tp.partition, held.key) not in self._cache:
                missing.setdefault(ticket.part.tp, []).append(held.offset)
        read: dict[tuple[int, int], Any] = {}
        for tp, offsets in missing.items():
            for offset, record in (await self._events_reader.read(tp, offsets)).items():
                read[(tp.partition, offset)] = record
        now = datetime.now(UTC)
        for ticket in tickets:
            part, held = ticket.part, ticket.held
            assert held is not None
            if part.revoked:
                continue
            due = self._cache.pop((part.tp.partition, held.key), None)
            if due is None:
                due = self._event_due(part, held, read.get((part.tp.partition, held.offset)))
            if due is None:
                self._lost(ticket, held)
                continue
            due = Due(
                due.delivery_id,
                due.message_id,
                due.subscription_id,
                due.event_type,
                due.workflow_id,
                due.source,
                due.body,
                held.attempt,
                now,
                held.first_attempted_at,
                ticket,
            )
            await self._releasing.acquire()
            self._spawn(self._admit_released(ticket, held.offset, due))

    async def _admit_released(self, ticket: Ticket, offset: int, due: Due) -> None:
        try:
            await self.admit(ticket, offset, due)
        finally:
            self._releasing.release()

    def _event_due(self, part: HoldPartition, held: Held, record: Any) -> Due | None:
        from services.delivery._intake import due_for

        if record is None:
            return None
        try:
            event = decode_any(record.headers, record.value, expect=DELIVERABLE_EVENTS)
        except PoisonMessage:
            return None
        source = (part.tp.topic, part.tp.partition, held.offset)
        return due_for(event, source, held.subscription_id, render_body(event.data))  # type: ignore[arg-type]

    def _lost(self, ticket: Ticket, held: Held) -> None:
        """Its event is no longer on the topic (retention): the hold ends without a request."""
        log.warning(
            "a held delivery's event has left workflow-events; it is dropped",
            extra={"subscription": held.subscription_id, "offset": held.offset},
        )
        tp = ticket.part.tp
        now = datetime.now(UTC)
        source = (tp.topic, tp.partition, held.offset)
        gone = Due("", "", held.subscription_id, "", None, source, "", held.attempt, now, now)
        self._settlement.settle(ticket, held.offset, gone, ticket.closing([]))

    # -- configuration changes ------------------------------------------------------------

    def _changed(self, key: str, entity: Entity | None) -> None:
        kind, _, subscription_id = key.partition("/")
        if kind != "subscription" or not self._parts:
            return
        sub = entity if isinstance(entity, Subscription) else None
        for part in list(self._parts.values()):
            if sub is None or not sub.enabled:
                part.release_all(subscription_id, paused_only=False)
                continue
            if sub.ordering != "run":
                part.unchain(subscription_id)
            if not sub.paused:
                part.release_all(subscription_id, paused_only=True)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _untied(due: Due) -> Due:
    return Due(
        due.delivery_id,
        due.message_id,
        due.subscription_id,
        due.event_type,
        due.workflow_id,
        due.source,
        due.body,
        due.attempt,
        due.due_at,
        due.first_attempted_at,
    )
