"""What the admin API holds while it runs, and how it writes configuration.

:class:`AdminContext` owns the Kafka producer, the config view, the delivery
log and a small consumer used only to read the config topic's end offsets.
Its :meth:`AdminContext.lifespan` creates the topics, starts them, waits for
the views to catch up, and stops them in reverse order.

:class:`ConfigStore` is the one way configuration is written: a record on the
compacted ``config`` topic, acknowledged by Kafka, then awaited in this
process's config view before the API answers (read your writes). Writes in
one process are serialized by a lock, and each first catches the view up to
the topic's end, so a write here sees every write another process finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from starlette.applications import Starlette

from shared.cloudevents import KafkaRecord, encode
from shared.config_view import ConfigView
from shared.crypto import SecretBox
from shared.entities import Entity
from shared.errors import BrokerUnavailable, ConfigurationError, Unavailable
from shared.health import Readiness
from shared.kafka import create_consumer, create_producer, ensure_topics, topic_partitions
from shared.settings import Settings
from shared.topics import Topics, topic_registry

from .delivery_log import DeliveryLog

log = logging.getLogger("hookline.admin")

SOURCE = "/hookline/admin"
VIEW_WAIT = 10.0
DELIVERY_LOG_WAIT = 15.0


def require_settings(settings: Settings) -> tuple[SecretBox, list[str]]:
    """The secret box and the admin tokens, or a :class:`ConfigurationError` saying what is missing."""
    missing = []
    if settings.secret_key is None or not settings.secret_key.get_secret_value().strip():
        missing.append("HOOKLINE_SECRET_KEY")
    tokens = [t.get_secret_value() for t in settings.admin_token if t.get_secret_value().strip()]
    if not tokens:
        missing.append("HOOKLINE_ADMIN_TOKEN")
    if missing:
        raise ConfigurationError(
            f"the admin API needs {' and '.join(missing)} "
            "(HOOKLINE_SECRET_KEY: 32 bytes in base64 or a passphrase of 16+ characters; "
            "HOOKLINE_ADMIN_TOKEN: comma-separated bearer tokens)"
        )
    assert settings.secret_key is not None
    return SecretBox(settings.secret_key.get_secret_value()), tokens


class ConfigStore:
    """Writes entities and tombstones to ``config``; answers once the view holds them."""

    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx
        self.lock = asyncio.Lock()

    async def sync(self) -> None:
        """Catch the view up to the config topic's current end (every finished write)."""
        ctx = self._ctx
        try:
            ends = await asyncio.wait_for(
                ctx.offsets.end_offsets(ctx.config_partitions), ctx.settings.publish_timeout
            )
            for tp, end in ends.items():
                if end > 0:
                    await ctx.view.wait_for(tp.partition, end - 1, timeout=VIEW_WAIT)
        except (TimeoutError, KafkaError) as exc:
            raise unavailable("the configuration could not be read up to date") from exc

    async def put(self, entity: Entity) -> Entity:
        await self._send(entity.key, encode(entity, key=entity.key, source=SOURCE))
        stored = self._ctx.view.get(type(entity), entity.id)
        return stored if stored is not None else entity

    async def delete(self, entity: Entity) -> None:
        await self._send(entity.key, KafkaRecord(key=entity.key.encode(), value=None))

    async def _send(self, key: str, record: KafkaRecord) -> None:
        ctx = self._ctx
        meta = await ctx.publish(ctx.topics.config, record)
        try:
            await ctx.view.wait_for(meta.partition, meta.offset, timeout=VIEW_WAIT)
        except TimeoutError as exc:
            raise unavailable("the write was acknowledged but is not yet visible here") from exc
        log.info(
            "config written",
            extra={"key": key, "op": "delete" if record.value is None else "put"},
        )


def unavailable(message: str) -> Unavailable:
    return Unavailable(message, retry_after=1)


class AdminContext:
    """The admin API's resources; usable only inside :meth:`lifespan`."""

    def __init__(self, settings: Settings) -> None:
        self.box, self.tokens = require_settings(settings)
        self.settings = settings
        self.topics: Topics = topic_registry(
            settings.topic_prefix,
            partitions=settings.topic_partitions,
            retry_tiers=len(settings.retry_schedule),
        )
        self.readiness = Readiness()
        self.readiness.add("config_view", lambda: self._view is not None and self._view.ready)
        self.readiness.add("broker", self._broker_reachable)
        self.store = ConfigStore(self)
        self._producer: AIOKafkaProducer | None = None
        self._view: ConfigView | None = None
        self._log: DeliveryLog | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self.config_partitions: list[TopicPartition] = []

    # -- the parts, once started ----------------------------------------------------------

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise unavailable("the admin API is starting")
        return self._producer

    @property
    def view(self) -> ConfigView:
        if self._view is None:
            raise unavailable("the admin API is starting")
        return self._view

    @property
    def delivery_log(self) -> DeliveryLog:
        if self._log is None:
            raise unavailable("the admin API is starting")
        return self._log

    @property
    def offsets(self) -> AIOKafkaConsumer:
        if self._offsets is None:
            raise unavailable("the admin API is starting")
        return self._offsets

    async def publish(self, topic: str, record: KafkaRecord) -> RecordMetadata:
        """Send and wait for ``acks=all``; 503 when Kafka does not acknowledge in time."""
        try:
            meta: RecordMetadata = await asyncio.wait_for(
                self.producer.send_and_wait(
                    topic, record.value, key=record.key, headers=record.headers
                ),
                self.settings.publish_timeout,
            )
        except (TimeoutError, KafkaError) as exc:
            log.warning("publish failed", extra={"topic": topic, "error": type(exc).__name__})
            raise unavailable("Kafka did not acknowledge the write in time") from exc
        return meta

    async def _broker_reachable(self) -> bool:
        if self._producer is None:
            return False
        await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2.0)
        return True

    # -- lifecycle ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        settings = self.settings
        bootstrap = settings.kafka_bootstrap_servers
        report = await ensure_topics(
            bootstrap, self.topics, replication_factor=settings.replication_factor
        )
        for line in report.differences:
            log.warning("topic differs from the registry", extra={"difference": line})
        async with contextlib.AsyncExitStack() as stack:
            producer = create_producer(bootstrap, client_id="hookline-admin")
            await producer.start()
            stack.push_async_callback(producer.stop)
            offsets = create_consumer(bootstrap, group_id=None, client_id="hookline-admin-offsets")
            await offsets.start()
            stack.push_async_callback(offsets.stop)
            partitions = await topic_partitions(bootstrap, self.topics.config)
            if not partitions:
                raise BrokerUnavailable(f"the config topic {self.topics.config} does not exist")
            view = await stack.enter_async_context(
                ConfigView(bootstrap, self.topics.config, secret_box=self.box)
            )
            delivery_log = await stack.enter_async_context(
                DeliveryLog(bootstrap, self.topics.delivery_attempts)
            )
            await view.wait_ready()
            try:
                await delivery_log.wait_ready(timeout=DELIVERY_LOG_WAIT)
            except TimeoutError:
                # A long log must not hold the API back; it keeps filling in behind.
                log.warning("the delivery log is still catching up; serving meanwhile")
            self.config_partitions = [TopicPartition(self.topics.config, p) for p in partitions]
            self._producer, self._offsets, self._view, self._log = (
                producer,
                offsets,
                view,
                delivery_log,
            )
            log.info(
                "admin API ready",
                extra={"config_topic": self.topics.config, "entities": _count(view)},
            )
            try:
                yield
            finally:
                self._producer = self._offsets = self._view = self._log = None


def _count(view: ConfigView) -> int:
    from shared.entities import ENTITY_TYPES

    return sum(len(view.all(kind)) for kind in ENTITY_TYPES.values())
