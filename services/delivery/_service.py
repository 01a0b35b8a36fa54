"""The delivery service: the composition root of the delivery steps.

Data flows through one module per step: the sources (``_intake``, ``_tiers``, on
the shared consumer runner) take records and build due deliveries; ``_admit``
turns each into a request, a hand-on past an open breaker, or a deferral;
``_attempt`` makes the request; ``_record`` turns its outcome into writes;
``_settle`` makes them durable and settles the record; ``_commit`` says which
offsets may be committed and which records have waited too long.

Lifecycle: ``async with DeliveryService(settings)`` makes sure the topics exist,
reads ``config`` to its end, opens the HTTP client and joins the consumer groups
(``workflow-events`` and one per retry tier). :meth:`shutdown` stops fetching,
lets in-flight deliveries finish or hand off within the grace period, commits,
and closes everything in reverse order; leaving the block calls it. The service
tunes nothing process-wide: the entry point does (``main.tuned_process``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Self

from services.delivery._admit import Admission
from services.delivery._attempt import Attempts
from services.delivery._controls import Controls
from services.delivery._guard import DestinationGuard, Resolver
from services.delivery._holdbook import HoldBook
from services.delivery._intake import EventIntake
from services.delivery._isolation import CircuitBreakers, FailingStreaks, Lanes
from services.delivery._metrics import watch_breakers
from services.delivery._notices import Notices
from services.delivery._ratelimit import RateLimits, Shares
from services.delivery._record import Recorder
from services.delivery._schedule import RetryPolicy
from services.delivery._sender import Sender
from services.delivery._settle import Settlement
from services.delivery._source import RecordSource
from services.delivery._tiers import RetryTier
from services.delivery._tls import ClientCertificates
from services.delivery._transport import TransportKind
from services.delivery._writer import RecordWriter
from shared.config_view import ConfigView
from shared.crypto import SecretBox
from shared.deadletter import DeadLetters
from shared.health import Verdict
from shared.kafka import create_producer, ensure_topics
from shared.settings import Settings
from shared.topics import Topics, topic_registry


class DeliveryService:
    """Workflow events → signed outbound webhooks, with retries through the tier topics."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver | None = None,
        transport: TransportKind = "aiohttp",
        stall_after: float = 0.25,
        abandon_after: float = 2.0,
    ) -> None:
        self.settings = settings
        self.topics: Topics = topic_registry(
            settings.topic_prefix,
            partitions=settings.topic_partitions,
            retry_tiers=len(settings.retry_schedule),
        )
        self._guard = DestinationGuard(
            resolver,
            allow_private=settings.allow_private_destinations,
            allow_insecure=settings.allow_insecure_urls,
        )
        self._transport = transport
        self._stall_after = stall_after
        # A request a stalled lane has held this long is given up (never past the timeout).
        self._abandon_after = min(abandon_after, settings.request_timeout)
        self._stack = contextlib.AsyncExitStack()
        self._admission: Admission | None = None
        self._settlement: Settlement | None = None
        self.loops: list[RecordSource] = []
        self.view: ConfigView | None = None
        self.shares: Shares | None = None
        self._holds: HoldBook | None = None
        self._shut = False

    async def __aenter__(self) -> Self:
        s = self.settings
        try:
            await ensure_topics(
                s.kafka_bootstrap_servers, self.topics, replication_factor=s.replication_factor
            )
            producer = await self._stack.enter_async_context(
                # Every delivery writes an attempt record: batches far larger than the
                # 16 KiB default keep the accumulator from stalling on each partition.
                create_producer(
                    s.kafka_bootstrap_servers,
                    client_id="hookline-delivery",
                    linger_ms=5,
                    max_batch_size=1024 * 1024,
                )
            )
            dead_letters = DeadLetters(producer, self.topics.dlq, service="delivery")
            writer = await self._stack.enter_async_context(RecordWriter(producer))
            box = SecretBox(s.secret_key.get_secret_value()) if s.secret_key else None
            view = await self._stack.enter_async_context(
                ConfigView(s.kafka_bootstrap_servers, self.topics.config, secret_box=box)
            )
            await view.wait_ready()
            self.view = view
            sender = await self._stack.enter_async_context(
                Sender(
                    self._guard,
                    max_connections=s.max_in_flight,
                    connect_timeout=s.connect_timeout,
                    request_timeout=s.request_timeout,
                    transport=self._transport,
                    proxy=s.egress_proxy,
                    ca_file=s.delivery_ca_file,
                    per_client_connections=s.max_in_flight_per_subscription,
                )
            )
            breakers = CircuitBreakers(s.breaker_failure_threshold, s.breaker_cooldown)
            watch_breakers(breakers)
            lanes = Lanes(s.max_in_flight_per_subscription, self._stall_after, self._abandon_after)
            attempts = await self._stack.enter_async_context(
                Attempts(
                    view=view,
                    sender=sender,
                    lanes=lanes,
                    breakers=breakers,
                    max_in_flight=s.max_in_flight,
                    stall_after=self._stall_after,
                    abandon_after=self._abandon_after,
                    certificates=ClientCertificates(box, s.delivery_ca_file),
                )
            )
            self._settlement = settlement = Settlement(writer, dead_letters)
            policy = RetryPolicy(s.retry_schedule, jitter=s.retry_jitter)
            recorder = Recorder(
                topics=self.topics,
                dead_letters=dead_letters,
                policy=policy,
                breakers=breakers,
                streaks=FailingStreaks(),
                disable_after_failing_for=s.disable_after_failing_for,
                notices=Notices(self.topics.workflow_events),
                max_attempts=s.max_retry_attempts,
            )
            self._admission = admission = Admission(
                view=view,
                lanes=lanes,
                breakers=breakers,
                attempts=attempts,
                recorder=recorder,
                settlement=settlement,
            )
            holds = await self._stack.enter_async_context(
                HoldBook(
                    s.kafka_bootstrap_servers,
                    events_topic=self.topics.workflow_events,
                    holds_topic=self.topics.delivery_holds,
                    holds_partitions=await writer.partition_count(self.topics.delivery_holds),
                    view=view,
                    settlement=settlement,
                )
            )
            holds.bind(admission)
            self._holds = holds
            sources = [self.topics.workflow_events, *self.topics.retry_tiers]
            self.shares = shares = Shares(
                {topic: await writer.partition_count(topic) for topic in sources}
            )
            Controls(
                admission=admission,
                limits=RateLimits(shares),
                recorder=recorder,
                settlement=settlement,
                first_gap=policy.gap(1),
            )
            group = f"{s.topic_prefix}delivery"
            self.loops = [
                EventIntake(
                    s.kafka_bootstrap_servers,
                    self.topics.workflow_events,
                    group_id=group,
                    max_unsettled=s.max_unsettled_per_partition,
                    view=view,
                    admission=admission,
                    dead_letters=dead_letters,
                    holds=holds,
                    on_assignment=shares.owned,
                ),
                *(
                    RetryTier(
                        s.kafka_bootstrap_servers,
                        tier,
                        group_id=f"{group}.{tier.rsplit('.', 1)[-1]}",
                        max_unsettled=s.max_unsettled_per_partition,
                        admission=admission,
                        dead_letters=dead_letters,
                        on_assignment=shares.owned,
                    )
                    for tier in self.topics.retry_tiers
                ),
            ]
            # Registered after the producer and sender: closed before them.
            self._stack.push_async_callback(self._close_loops)
            for loop in self.loops:
                await loop.__aenter__()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop fetching, finish or hand off within ``grace`` seconds, commit, close."""
        if self._shut:
            return
        self._shut = True
        grace = self.settings.shutdown_grace if grace is None else grace
        await asyncio.gather(*(loop.stop() for loop in self.loops))
        if self._holds is not None:
            self._holds.stop()
        # Deliveries first (they queue writes as they end), then the writes; within 80 %
        # of the grace, the rest kept for the commits and closing that follow.
        deadline = time.monotonic() + grace * 0.8
        if self._admission is not None:
            await self._admission.drain(deadline)
        if self._settlement is not None:
            await self._settlement.drain(deadline)
        await asyncio.gather(*(loop.runner.drain(0.0) for loop in self.loops))
        await self._stack.aclose()

    async def _close_loops(self) -> None:
        for loop in self.loops:
            await loop.__aexit__(None, None, None)

    # -- readiness ------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.readiness().ready

    def readiness(self) -> Verdict:
        """Ready while the view is caught up, every consumer runs, and no partition has
        held a record unsettled longer than ``max_unsettled_age`` (the reason names it)."""
        if self.view is None or not self.view.ready:
            return Verdict(False, "the config view is not caught up")
        stopped = [loop.name for loop in self.loops if not loop.running]
        if not self.loops or stopped:
            return Verdict(False, f"consumers not running: {', '.join(stopped) or 'none yet'}")
        max_age = self.settings.max_unsettled_age
        overdue = [str(o) for loop in self.loops for o in loop.overdue(max_age)]
        if overdue:
            return Verdict(False, f"{'; '.join(overdue)} (max {max_age:g} s)")
        return Verdict(True)

    def held(self) -> int:
        """Deliveries held in the hold store of the partitions this replica reads."""
        return 0 if self._holds is None else self._holds.held()

    async def wait_joined(self, timeout: float = 30.0) -> None:
        """Wait until every loop has been assigned its partitions (tests, benchmarks)."""
        async with asyncio.timeout(timeout):
            for loop in self.loops:
                await loop.joined.wait()
