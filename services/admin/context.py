"""What the admin API holds while it runs, and how it writes configuration.

:class:`AdminContext` owns the Kafka producer, the config view, the view
database of the operations data and its materializer, the job runner
(replays, recoveries), and a small consumer used only to read the config
topic's end offsets. Its :meth:`AdminContext.lifespan` creates the topics,
starts them, waits for the config view to catch up (in the background, retried
with backoff while Kafka does not answer: :mod:`shared.startup`), and stops them
in reverse order. The operations view catches up behind: until it has, ``/readyz`` says
not ready and the routes that read it answer 503; the job runner starts (and
resumes interrupted jobs) once it has.

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
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

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
from shared.startup import KafkaStartup
from shared.topics import Topics, topic_registry

from .audit import AuditTrail
from .auth import Tokens
from .materialize import Materializer
from .viewdb import ViewDatabase

if TYPE_CHECKING:
    from .jobs import JobRunner

log = logging.getLogger("hookline.admin")

SOURCE = "/hookline/admin"
VIEW_WAIT = 10.0
OPS_VIEW_WAIT = 15.0


def view_path(settings: Settings) -> Path:
    """The operations view's file: ``HOOKLINE_ADMIN_VIEW_PATH``, else one per topic prefix."""
    if settings.admin_view_path is not None:
        return settings.admin_view_path
    return settings.cache_dir / "admin" / f"{settings.topic_prefix}view.sqlite3"


def require_settings(settings: Settings) -> SecretBox:
    """The secret box, or a :class:`ConfigurationError` saying what is missing."""
    if settings.secret_key is None or not settings.secret_key.get_secret_value().strip():
        raise ConfigurationError(
            "the admin API needs HOOKLINE_SECRET_KEY (32 bytes in base64 or a passphrase of "
            "16+ characters; several, comma-separated, while rotating: the first encrypts)"
        )
    return SecretBox(settings.secret_key.get_secret_value())


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
        self.box = require_settings(settings)
        self.tokens = Tokens.from_settings(settings)
        self.settings = settings
        self.topics: Topics = topic_registry(
            settings.topic_prefix,
            partitions=settings.topic_partitions,
            retry_tiers=len(settings.retry_schedule),
            audit_retention_days=settings.audit_retention_days,
        )
        self.readiness = Readiness()
        self.startup = KafkaStartup("admin")
        self.startup.register(
            self.readiness, secured=settings.kafka_security_protocol != "PLAINTEXT"
        )
        self.readiness.add("config_view", lambda: self._view is not None and self._view.ready)
        self.readiness.add("broker", self._broker_reachable)
        self.readiness.add(
            "operations_view",
            lambda: (
                self._jobs is not None
                and self._materializer is not None
                and self._materializer.running
            ),
        )
        self.store = ConfigStore(self)
        self.replica = settings.replica_id or socket.gethostname() or "admin"
        self._producer: AIOKafkaProducer | None = None
        self._view: ConfigView | None = None
        self._db: ViewDatabase | None = None
        self._materializer: Materializer | None = None
        self._jobs: JobRunner | None = None
        self._jobs_up = asyncio.Event()
        self._offsets: AIOKafkaConsumer | None = None
        self._audit: AuditTrail | None = None
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
    def materializer(self) -> Materializer:
        if self._materializer is None:
            raise unavailable("the admin API is starting")
        return self._materializer

    @property
    def view_db(self) -> ViewDatabase:
        """The operations view; 503 until it has caught up with the topics."""
        if self._db is None or self._materializer is None or not self._materializer.ready:
            raise unavailable("the operations view is catching up with Kafka")
        return self._db

    @property
    def jobs(self) -> JobRunner:
        if self._jobs is None:
            raise unavailable("the operations view is catching up with Kafka")
        return self._jobs

    @property
    def audit(self) -> AuditTrail:
        """The audit trail (see :mod:`.audit`); 503 until it runs."""
        if self._audit is None:
            raise unavailable("the admin API is starting")
        return self._audit

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
        # The API answers (503, /readyz not ready) while Kafka is being reached.
        try:
            # Entered once Kafka answered the first attempt and the views caught up (as
            # long as that takes with a backlog, up to the waits below), or once it failed.
            async with self.startup.in_background(self._start, settle=2 * OPS_VIEW_WAIT + 30):
                yield
        finally:
            self._producer = self._offsets = self._view = None
            self._db = self._materializer = None

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        """Every Kafka part, in order; an attempt that fails is retried from the top."""
        settings = self.settings
        bootstrap = settings.kafka_bootstrap_servers
        report = await ensure_topics(
            bootstrap, self.topics, replication_factor=settings.replication_factor
        )
        for line in report.differences:
            log.warning("topic differs from the registry", extra={"difference": line})
        await self.startup.check_access(settings, stack)
        producer = create_producer(bootstrap, client_id="hookline-admin")
        stack.push_async_callback(producer.stop)
        await producer.start()
        self._audit = await stack.enter_async_context(
            AuditTrail(bootstrap, self.topics.audit, publish_timeout=settings.publish_timeout)
        )
        offsets = create_consumer(bootstrap, group_id=None, client_id="hookline-admin-offsets")
        stack.push_async_callback(offsets.stop)
        await offsets.start()
        partitions = await topic_partitions(bootstrap, self.topics.config)
        if not partitions:
            raise BrokerUnavailable(f"the config topic {self.topics.config} does not exist")
        view = await stack.enter_async_context(
            ConfigView(bootstrap, self.topics.config, secret_box=self.box)
        )
        db = await stack.enter_async_context(ViewDatabase(view_path(settings)))
        materializer = await stack.enter_async_context(Materializer(bootstrap, self.topics, db))
        await view.wait_ready()
        self.config_partitions = [TopicPartition(self.topics.config, p) for p in partitions]
        self._producer, self._offsets, self._view = producer, offsets, view
        self._db, self._materializer = db, materializer
        stop = asyncio.Event()
        behind = asyncio.create_task(self._once_caught_up(stop), name="admin-jobs")
        stack.push_async_callback(_finish, behind, stop)
        with contextlib.suppress(TimeoutError):
            # A long backlog must not hold the API back; the view fills in behind.
            await materializer.wait_ready(OPS_VIEW_WAIT)
        if materializer.ready:
            # Ready to serve all of it: the job runner follows the view at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._jobs_up.wait(), OPS_VIEW_WAIT)
        else:
            log.warning("the operations view is still catching up; serving meanwhile")
        log.info(
            "admin API ready",
            extra={"config_topic": self.topics.config, "entities": _count(view)},
        )

    async def _once_caught_up(self, stop: asyncio.Event) -> None:
        """Once the view has caught up: the job runner (resuming jobs), the health series."""
        from .endpoint_health import HealthMetrics
        from .jobs import JobRunner
        from .replays import ReplayJobs

        assert self._materializer is not None
        await self._materializer.wait_ready(timeout=24 * 3600)
        kinds = ReplayJobs(self)
        handlers = {"replay": kinds.replay_records, "recovery": kinds.recover_records}
        async with JobRunner(self, handlers) as jobs, HealthMetrics(self):
            self._jobs = jobs
            self._jobs_up.set()
            try:
                await stop.wait()
            finally:
                self._jobs = None
                self._jobs_up.clear()


async def _finish(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    if not task.done():
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 10)
    elif not task.cancelled() and task.exception() is not None:
        log.error("the job runner failed", extra={"error": repr(task.exception())})


def _count(view: ConfigView) -> int:
    from shared.entities import ENTITY_TYPES

    return sum(len(view.all(kind)) for kind in ENTITY_TYPES.values())
