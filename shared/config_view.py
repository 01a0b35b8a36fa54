"""The config view: every service's in-memory copy of the compacted ``config`` topic.

Lifecycle: ``async with ConfigView(...)`` reads the topic from the beginning;
:meth:`ConfigView.wait_ready` returns once it has applied everything up to the
end offsets seen at start; it then keeps following. Lookups are answered from
memory. A tombstone deletes. A record that does not parse is logged and skipped
(and dead-lettered when a :class:`~shared.deadletter.DeadLetters` is given):
configuration must never stop a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from shared.cloudevents import decode
from shared.crypto import SecretBox
from shared.deadletter import DeadLetters
from shared.entities import ENTITY_TYPES, Entity, Subscription, Webhook, Workflow
from shared.errors import BrokerUnavailable, PoisonMessage, SecretError
from shared.kafka import create_consumer, topic_partitions

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Entity)
Listener = Callable[[str, Entity | None], None]


class ConfigView:
    """Follows ``config``; answers lookups for webhooks, subscriptions and workflows."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        secret_box: SecretBox | None = None,
        dead_letters: DeadLetters | None = None,
        poll_timeout: float = 0.2,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._box = secret_box
        self._dead_letters = dead_letters
        self._poll_ms = int(poll_timeout * 1000)
        self._entities: dict[str, Entity] = {}
        self._listeners: list[Listener] = []
        self._applied: dict[int, int] = {}
        self._start_end: dict[int, int] = {}
        self._ready = asyncio.Event()
        self._progress = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._plain_cache: dict[tuple[str, str], str] = {}
        self._failure: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        consumer = create_consumer(self._bootstrap, group_id=None, client_id="hookline-config")
        try:
            partitions = await topic_partitions(self._bootstrap, self._topic)
            await consumer.start()
            if not partitions:
                raise BrokerUnavailable(f"config topic {self._topic} does not exist")
            tps = [TopicPartition(self._topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._start_end = {tp.partition: off for tp, off in ends.items()}
        self._applied = {tp.partition: 0 for tp in tps}
        self._check_ready()
        self._task = asyncio.create_task(self._follow(), name="config-view")
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
        """Wait until the record at ``offset`` of ``partition`` has been applied."""

        def applied() -> bool:
            return self._applied.get(partition, 0) > offset

        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(applied), timeout)

    def add_listener(self, listener: Listener) -> None:
        """``listener(key, entity_or_None)`` is called after each applied change."""
        self._listeners.append(listener)

    # -- lookups --------------------------------------------------------------------------

    def get(self, kind: type[E], entity_id: str) -> E | None:
        entity = self._entities.get(f"{kind.kind}/{entity_id}")
        return entity if isinstance(entity, kind) else None

    def all(self, kind: type[E]) -> list[E]:
        prefix = f"{kind.kind}/"
        return [
            e for k, e in self._entities.items() if k.startswith(prefix) and isinstance(e, kind)
        ]

    def webhook(self, webhook_id: str) -> Webhook | None:
        return self.get(Webhook, webhook_id)

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self.get(Subscription, subscription_id)

    def workflow(self, workflow_id: str) -> Workflow | None:
        return self.get(Workflow, workflow_id)

    def subscriptions_for(self, event_type: str, workflow_id: str | None) -> list[Subscription]:
        """Enabled subscriptions that want this event type (and workflow, where they name some)."""
        return [s for s in self.all(Subscription) if s.wants(event_type, workflow_id)]

    def secrets(self, entity: Webhook | Subscription, now: datetime | None = None) -> list[str]:
        """The entity's secrets still valid at ``now``, decrypted; newest first."""
        if self._box is None:
            raise SecretError("this config view was built without a secret key")
        moment = now or datetime.now(UTC)
        out: list[str] = []
        for stored in sorted(entity.secrets, key=lambda s: s.created_at, reverse=True):
            if not stored.active(moment):
                continue
            cache_key = (entity.key, stored.ciphertext)
            plain = self._plain_cache.get(cache_key)
            if plain is None:
                plain = self._box.decrypt(stored.ciphertext, entity_key=entity.key)
                self._plain_cache[cache_key] = plain
            out.append(plain)
        return out

    # -- following ------------------------------------------------------------------------

    async def _follow(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=self._poll_ms)
            except KafkaError as exc:
                log.warning("config view poll failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(0.5)
                continue
            for tp, records in batches.items():
                for record in records:
                    await self._apply(record)
                    self._applied[tp.partition] = record.offset + 1
            # Positions move past transaction markers and compacted gaps too.
            for tp in consumer.assignment():
                with contextlib.suppress(KafkaError):
                    position = await consumer.position(tp)
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

    async def _apply(self, record: object) -> None:
        key_bytes: bytes | None = getattr(record, "key", None)
        value: bytes | None = getattr(record, "value", None)
        headers = getattr(record, "headers", None)
        key = key_bytes.decode(errors="replace") if key_bytes else ""
        kind_name, _, entity_id = key.partition("/")
        model = ENTITY_TYPES.get(kind_name)  # type: ignore[call-overload]
        try:
            if model is None or not entity_id:
                raise PoisonMessage(f"config key {key!r} is not <kind>/<id>")
            if value is None:
                previous = self._entities.pop(key, None)
                if previous is not None:
                    self._notify(key, None)
                return
            entity = decode(headers, value, model).data
            if entity.id != entity_id:
                raise PoisonMessage(f"config key {key!r} does not match entity id {entity.id!r}")
        except PoisonMessage as exc:
            log.warning("skipping invalid config record", extra={"key": key, "reason": exc.reason})
            if self._dead_letters is not None:
                await self._dead_letters.send(
                    key=key_bytes,
                    value=value,
                    headers=headers,
                    error=exc,
                    source_topic=self._topic,
                    partition=getattr(record, "partition", -1),
                    offset=getattr(record, "offset", -1),
                )
            return
        self._entities[key] = entity
        self._notify(key, entity)

    def _notify(self, key: str, entity: Entity | None) -> None:
        for listener in self._listeners:
            try:
                listener(key, entity)
            except Exception:
                log.exception("config listener failed", extra={"key": key})
