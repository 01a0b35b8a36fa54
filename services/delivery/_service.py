"""The delivery service: config view, producer, HTTP sender and the consumer loops, together.

Lifecycle: ``async with DeliveryService(settings)`` makes sure the topics exist,
reads ``config`` to its end, opens the HTTP client and joins the consumer groups
(``workflow-events`` and one per retry tier). :meth:`shutdown` stops fetching,
lets in-flight deliveries finish or hand off within the grace period, commits,
and closes everything in reverse order; leaving the block calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from types import TracebackType
from typing import Self

from services.delivery._attempts import Deliverer, DeliveryLimits
from services.delivery._guard import DestinationGuard, Resolver
from services.delivery._intake import EventIntake
from services.delivery._loop import ConsumerLoop
from services.delivery._schedule import RetryPolicy
from services.delivery._sender import Sender
from services.delivery._tiers import RetryTier
from services.delivery._transport import TransportKind
from services.delivery._writer import RecordWriter
from shared.config_view import ConfigView
from shared.crypto import SecretBox
from shared.deadletter import DeadLetters
from shared.kafka import create_producer, ensure_topics
from shared.settings import Settings
from shared.topics import Topics, topic_registry

GC_YOUNG_THRESHOLD = 10_000


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
        self._deliverer: Deliverer | None = None
        self.loops: list[ConsumerLoop] = []
        self.view: ConfigView | None = None
        self._shut = False
        self._frozen = False
        self._gc_thresholds: tuple[int, int, int] | None = None

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
                )
            )
            self._deliverer = deliverer = Deliverer(
                view=view,
                sender=sender,
                writer=writer,
                topics=self.topics,
                dead_letters=dead_letters,
                policy=RetryPolicy(s.retry_schedule, jitter=s.retry_jitter),
                limits=DeliveryLimits(
                    max_in_flight=s.max_in_flight,
                    max_in_flight_per_subscription=s.max_in_flight_per_subscription,
                    stall_after=self._stall_after,
                    breaker_failure_threshold=s.breaker_failure_threshold,
                    breaker_cooldown=s.breaker_cooldown,
                    disable_after_failing_for=s.disable_after_failing_for,
                    abandon_after=self._abandon_after,
                ),
            )
            await self._stack.enter_async_context(deliverer)
            group = f"{s.topic_prefix}delivery"
            self.loops = [
                EventIntake(
                    s.kafka_bootstrap_servers,
                    self.topics.workflow_events,
                    group_id=group,
                    max_unsettled=s.max_unsettled_per_partition,
                    view=view,
                    deliverer=self._deliverer,
                    dead_letters=dead_letters,
                ),
                *(
                    RetryTier(
                        s.kafka_bootstrap_servers,
                        tier,
                        group_id=f"{group}.{tier.rsplit('.', 1)[-1]}",
                        max_unsettled=s.max_unsettled_per_partition,
                        deliverer=self._deliverer,
                        dead_letters=dead_letters,
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
        # What start-up built (modules, models, the config view) lives as long as the
        # service: out of the collector's way, so the collections that every few thousand
        # deliveries' garbage triggers do not walk it again and again.
        gc.freeze()
        self._frozen = True
        # A delivery leaves no cyclic garbage behind (the sender cuts the one cycle a
        # response makes), so a young-generation collection every 700 allocations only
        # walks the live state of the deliveries in flight, again and again: about a
        # tenth of the service's CPU at saturation. Every 10,000 keeps memory as flat.
        self._gc_thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *self._gc_thresholds[1:])
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
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        if self._gc_thresholds is not None:
            gc.set_threshold(*self._gc_thresholds)
            self._gc_thresholds = None
        grace = self.settings.shutdown_grace if grace is None else grace
        await asyncio.gather(*(loop.stop() for loop in self.loops))
        # Keep a slice of the grace for the hand-offs and commits that follow.
        await asyncio.gather(*(loop.drain(grace * 0.8) for loop in self.loops))
        if self._deliverer is not None:
            self._deliverer.stopping = True
        await self._stack.aclose()

    async def _close_loops(self) -> None:
        for loop in self.loops:
            await loop.__aexit__(None, None, None)

    # -- readiness ------------------------------------------------------------------------

    def ready(self) -> bool:
        return (
            self.view is not None
            and self.view.ready
            and bool(self.loops)
            and all(loop.running for loop in self.loops)
        )

    async def wait_joined(self, timeout: float = 30.0) -> None:
        """Wait until every loop has been assigned its partitions (tests, benchmarks)."""
        async with asyncio.timeout(timeout):
            for loop in self.loops:
                await loop.joined.wait()
