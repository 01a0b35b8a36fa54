"""The materializer: the topics the admin view is made of, followed into its database.

It follows ``delivery-attempts``, ``inbound``, ``workflow-events`` (status
changes: which runs an inbound event started, and where they are), ``dlq``,
``operations`` and ``audit`` with one consumer (no group: every replica keeps its own copy).

Lifecycle: ``async with Materializer(...)`` reads the offsets the database
holds, seeks every partition there (the beginning for a new file; Kafka's
earliest offset when retention has passed the stored one), notes the end
offsets, and starts following in a background task: each fetched batch is
written, with its partitions' next offsets, in one transaction on the writer
thread. :attr:`ready` is true once everything up to the end offsets seen at
start is written; :meth:`wait_for` waits for one record (read your writes).
A second task deletes rows older than their topic's ``retention.ms`` (read at
start and then every ``expire_every`` seconds), so rows expire with the topics.
Leaving the context stops both tasks and the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from shared.errors import BrokerUnavailable
from shared.kafka import create_consumer, topic_partitions
from shared.topics import Topics

from .rows import Layout, Raw, apply_batch, now_us, stored_offsets
from .viewdb import ViewDatabase

log = logging.getLogger("hookline.admin.view")

# Table, time column, the topic whose retention bounds it.
EXPIRING = (
    ("attempts", "attempted_at", "attempts"),
    ("deliveries", "last_attempt_at", "attempts"),
    ("inbound_events", "received_at", "inbound"),
    ("runs", "updated_at", "events"),
    ("dead_letters", "dead_lettered_at", "dlq"),
    ("operations", "updated_at", "operations"),
    ("audit", "at", "audit"),
)
DELETE_CHUNK = 5000


def _expire(conn: sqlite3.Connection, cutoffs: dict[str, int]) -> int:
    """Delete rows older than their cutoff, in chunks, so readers are never held long."""
    deleted = 0
    for table, column, _ in EXPIRING:
        cutoff = cutoffs.get(table)
        if cutoff is None:
            continue
        while True:
            # Rows arrive roughly in time order, so the old ones sit at the lowest rowids.
            cursor = conn.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table}"  # noqa: S608
                f" WHERE {column} < ? ORDER BY rowid LIMIT {DELETE_CHUNK})",
                (cutoff,),
            )
            deleted += cursor.rowcount
            if cursor.rowcount < DELETE_CHUNK:
                break
    return deleted


class Materializer:
    """Follows the view's topics into a :class:`ViewDatabase`."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Topics,
        db: ViewDatabase,
        *,
        max_records: int = 2000,
        poll_timeout: float = 0.2,
        expire_every: float = 600.0,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._db = db
        self._names = {
            "attempts": topics.delivery_attempts,
            "inbound": topics.inbound,
            "events": topics.workflow_events,
            "dlq": topics.dlq,
            "operations": topics.operations,
            "audit": topics.audit,
        }
        self._layout = Layout.of(**self._names)
        self._max_records = max_records
        self._poll_ms = int(poll_timeout * 1000)
        self._expire_every = expire_every
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._applied: dict[TopicPartition, int] = {}
        self._start_end: dict[TopicPartition, int] = {}
        self._ready = asyncio.Event()
        self._progress = asyncio.Condition()
        self.records_applied = 0
        self.caught_up_in: float | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        started = time.monotonic()
        tps: list[TopicPartition] = []
        for topic in self._names.values():
            partitions = await topic_partitions(self._bootstrap, topic)
            if not partitions:
                raise BrokerUnavailable(f"topic {topic} does not exist")
            tps += [TopicPartition(topic, p) for p in partitions]
        stored = await self._db.read(stored_offsets)
        # Small fetches: the view's memory must not grow with the backlog it reads.
        consumer = create_consumer(
            self._bootstrap,
            group_id=None,
            client_id="hookline-admin-view",
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=8 * 1024 * 1024,
        )
        try:
            await consumer.start()
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
            ends = await consumer.end_offsets(tps)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._start_end = dict(ends)
        self._applied = {tp: stored.get((tp.topic, tp.partition), 0) for tp in tps}
        self._started = started
        self._check_ready()
        self._tasks = [
            asyncio.create_task(self._follow(), name="view-follow"),
            asyncio.create_task(self._expire_loop(), name="view-expire"),
        ]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._tasks[0].done()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_for(
        self, topic: str, partition: int, offset: int, timeout: float = 10.0
    ) -> None:
        """Wait until the record at ``offset`` of ``topic``/``partition`` is in the database."""
        tp = TopicPartition(topic, partition)
        async with self._progress:
            await asyncio.wait_for(
                self._progress.wait_for(lambda: self._applied.get(tp, 0) > offset), timeout
            )

    def lag(self) -> int:
        """Records between what is written and the end offsets seen at start (0 once ready)."""
        return sum(max(0, end - self._applied.get(tp, 0)) for tp, end in self._start_end.items())

    # -- following ------------------------------------------------------------------------

    async def _follow(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                fetched = await consumer.getmany(
                    timeout_ms=self._poll_ms, max_records=self._max_records
                )
            except KafkaError as exc:
                log.warning("view poll failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(0.5)
                continue
            batch = [
                (
                    tp.topic,
                    tp.partition,
                    [
                        Raw(r.partition, r.offset, r.timestamp, r.key, r.value, r.headers)
                        for r in rs
                    ],
                )
                for tp, rs in fetched.items()
                if rs
            ]
            if batch:
                await self._db.write(
                    functools.partial(apply_batch, layout=self._layout, batch=batch)
                )
                for topic, partition, records in batch:
                    self._applied[TopicPartition(topic, partition)] = records[-1].offset + 1
                    self.records_applied += len(records)
            # Positions also move past transaction markers and compacted gaps.
            for tp in consumer.assignment():
                with contextlib.suppress(KafkaError):
                    position = await consumer.position(tp)
                    if position > self._applied.get(tp, 0):
                        self._applied[tp] = position
            self._check_ready()
            async with self._progress:
                self._progress.notify_all()

    def _check_ready(self) -> None:
        if not self._ready.is_set() and all(
            self._applied.get(tp, 0) >= end for tp, end in self._start_end.items()
        ):
            self.caught_up_in = time.monotonic() - self._started
            self._ready.set()
            log.info(
                "the view caught up",
                extra={"seconds": round(self.caught_up_in, 3), "records": self.records_applied},
            )

    # -- retention ------------------------------------------------------------------------

    async def retention(self) -> dict[str, int]:
        """``retention.ms`` of each followed topic (logical name → ms; -1: kept forever)."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, client_id="hookline-admin-view"
        )
        await admin.start()
        try:
            names = {v: k for k, v in self._names.items()}
            resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in names]
            out: dict[str, int] = {}
            for response in await admin.describe_configs(resources):
                for resource in response.resources:
                    entries = {entry[0]: entry[1] for entry in resource[4]}
                    value = entries.get("retention.ms")
                    if resource[3] in names and value is not None:
                        out[names[resource[3]]] = int(value)
            return out
        finally:
            await admin.close()

    async def expire(self) -> int:
        """Delete the rows their topic no longer holds; returns how many."""
        retention = await self.retention()
        now = now_us()
        cutoffs = {
            table: now - retention[logical] * 1000
            for table, _, logical in EXPIRING
            if retention.get(logical, -1) >= 0
        }
        deleted = await self._db.write(lambda conn: _expire(conn, cutoffs))
        if deleted:
            log.info("expired view rows", extra={"rows": deleted})
        return deleted

    async def _expire_loop(self) -> None:
        while True:
            try:
                await self.expire()
            except (KafkaError, sqlite3.Error, OSError) as exc:
                log.warning("view expiry failed; trying later", extra={"error": repr(exc)})
            await asyncio.sleep(self._expire_every)
