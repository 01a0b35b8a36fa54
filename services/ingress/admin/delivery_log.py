"""The delivery log: the ``delivery-attempts`` topic followed into bounded memory.

Lifecycle: ``async with DeliveryLog(...)`` reads every partition of the topic
from the beginning and keeps following it; :meth:`DeliveryLog.wait_ready`
returns once it has read up to the end offsets seen at start. It holds the
attempts of at most ``max_deliveries`` deliveries in about ``max_bytes`` (the
least recently attempted are forgotten first), at most ``max_attempts``
attempts each (the first and the latest are kept), and one copy of a
delivery's body. A record that does not parse is logged and
skipped. Lookups are answered from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from shared.cloudevents import decode
from shared.errors import BrokerUnavailable, PoisonMessage
from shared.kafka import create_consumer, topic_partitions
from shared.messages import DeliveryAttempted, DeliveryOutcome, SourceRecord

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeliveryRecord:
    """One delivery (one event to one subscription) and the attempts seen for it."""

    delivery_id: str
    attempts: list[DeliveryAttempted] = field(default_factory=list)
    body: str | None = None  # the latest body recorded (kept once, not per attempt)
    size: int = 0  # an estimate of the memory its attempts hold, in bytes

    @property
    def latest(self) -> DeliveryAttempted:
        return self.attempts[-1]

    @property
    def first(self) -> DeliveryAttempted:
        return self.attempts[0]

    @property
    def subscription_id(self) -> str:
        return self.latest.subscription_id

    @property
    def outcome(self) -> DeliveryOutcome:
        return self.latest.outcome

    @property
    def last_attempt_at(self) -> datetime:
        return self.latest.attempted_at

    @property
    def order_key(self) -> tuple[datetime, str]:
        return (self.latest.attempted_at, self.delivery_id)

    @property
    def source(self) -> SourceRecord | None:
        for attempt in reversed(self.attempts):
            if attempt.source is not None:
                return attempt.source
        return None


class DeliveryLog:
    """Follows ``delivery-attempts``; answers queries about deliveries and their attempts."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        max_deliveries: int = 50_000,
        max_attempts: int = 50,
        max_bytes: int = 64 * 1024 * 1024,
        poll_timeout: float = 0.2,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._max_deliveries = max_deliveries
        self._max_attempts = max(2, max_attempts)
        self._max_bytes = max_bytes
        self._bytes = 0
        self._poll_ms = int(poll_timeout * 1000)
        self._deliveries: OrderedDict[str, DeliveryRecord] = OrderedDict()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._start_end: dict[int, int] = {}
        self._read: dict[int, int] = {}
        self._ready = asyncio.Event()
        self._progress = asyncio.Condition()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        partitions = await topic_partitions(self._bootstrap, self._topic)
        if not partitions:
            raise BrokerUnavailable(f"topic {self._topic} does not exist")
        consumer = create_consumer(
            self._bootstrap, group_id=None, client_id="hookline-admin-delivery-log"
        )
        try:
            await consumer.start()
            tps = [TopicPartition(self._topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._start_end = {tp.partition: offset for tp, offset in ends.items()}
        self._read = {tp.partition: 0 for tp in tps}
        self._check_ready()
        self._task = asyncio.create_task(self._follow(), name="delivery-log")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_for(self, partition: int, offset: int, timeout: float = 10.0) -> None:
        """Wait until the record at ``offset`` of ``partition`` has been read."""
        async with self._progress:
            await asyncio.wait_for(
                self._progress.wait_for(lambda: self._read.get(partition, 0) > offset), timeout
            )

    # -- queries --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._deliveries)

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        return self._deliveries.get(delivery_id)

    def query(
        self,
        *,
        subscription_id: str | None = None,
        event_type: str | None = None,
        outcome: str | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[DeliveryRecord]:
        """Matching deliveries, newest (latest attempt) first; ``before`` is a page's end."""
        found = [
            d
            for d in self._deliveries.values()
            if (subscription_id is None or d.subscription_id == subscription_id)
            and (event_type is None or d.latest.event_type == event_type)
            and (outcome is None or d.outcome == outcome)
            and (before is None or d.order_key < before)
        ]
        found.sort(key=lambda d: d.order_key, reverse=True)
        return found if limit is None else found[:limit]

    # -- following ------------------------------------------------------------------------

    async def _follow(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=self._poll_ms)
            except KafkaError as exc:
                log.warning("delivery log poll failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(0.5)
                continue
            for tp, records in batches.items():
                self.apply_records(records)
                if records:
                    self._read[tp.partition] = records[-1].offset + 1
            for tp in consumer.assignment():
                with contextlib.suppress(KafkaError):
                    position = await consumer.position(tp)
                    if position > self._read.get(tp.partition, 0):
                        self._read[tp.partition] = position
            self._check_ready()
            async with self._progress:
                self._progress.notify_all()

    def _check_ready(self) -> None:
        if not self._ready.is_set() and all(
            self._read.get(p, 0) >= end for p, end in self._start_end.items()
        ):
            self._ready.set()

    def apply_records(self, records: Iterable[Any]) -> None:
        for record in records:
            try:
                attempt = decode(record.headers, record.value, DeliveryAttempted).data
            except PoisonMessage as exc:
                log.warning(
                    "skipping invalid delivery attempt record",
                    extra={
                        "partition": record.partition,
                        "offset": record.offset,
                        "reason": exc.reason,
                    },
                )
                continue
            self.add(attempt)

    def add(self, attempt: DeliveryAttempted) -> None:
        """Record one attempt (in the order the topic holds them)."""
        if attempt.attempted_at.tzinfo is None:  # a publisher that forgot the zone meant UTC
            attempt = attempt.model_copy(
                update={"attempted_at": attempt.attempted_at.replace(tzinfo=UTC)}
            )
        delivery = self._deliveries.get(attempt.delivery_id)
        if delivery is None:
            delivery = DeliveryRecord(attempt.delivery_id)
            self._deliveries[attempt.delivery_id] = delivery
        else:
            self._deliveries.move_to_end(attempt.delivery_id)
        if attempt.body is not None:
            # One copy of the body is enough: the latest one recorded.
            self._resize(delivery, len(attempt.body) - len(delivery.body or ""))
            delivery.body = attempt.body
            attempt = attempt.model_copy(update={"body": None})
        delivery.attempts.append(attempt)
        self._resize(delivery, _size(attempt))
        if len(delivery.attempts) > self._max_attempts:
            dropped = delivery.attempts.pop(1)  # keep the first and the latest
            self._resize(delivery, -_size(dropped))
        while self._deliveries and (
            len(self._deliveries) > self._max_deliveries or self._bytes > self._max_bytes
        ):
            _, evicted = self._deliveries.popitem(last=False)
            self._bytes -= evicted.size

    @property
    def size(self) -> int:
        """An estimate of the memory the log holds, in bytes."""
        return self._bytes

    def _resize(self, delivery: DeliveryRecord, delta: int) -> None:
        delivery.size += delta
        self._bytes += delta


def _size(attempt: DeliveryAttempted) -> int:
    texts = (attempt.response_excerpt, attempt.error, attempt.url)
    return 600 + sum(len(t) for t in texts if t)
