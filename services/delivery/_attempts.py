"""One processing step: take a due delivery to a settled state.

:meth:`Deliverer.deliver` makes at most one request and returns once what
follows from it is durable in Kafka: the attempt record on ``delivery-attempts``
and, where the delivery is not finished, its hand-off (the next retry tier, the
dlq, or a disabled subscription on ``config``). Only then may the caller count
the delivery settled and let the source record's offset be committed.

Lifecycle: ``async with deliverer`` runs the stall watchdog, which gives up the
requests a stalled lane has held for ``abandon_after`` seconds (they become
failed attempts, error ``stalled``, handed to their next tier), so a hung
receiver holds neither its records' offsets nor the global pool for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, get_args

from aiokafka.errors import KafkaError

from services.delivery._codec import SOURCE, Due, attempt_record, due_record
from services.delivery._isolation import CircuitBreakers, FailingStreaks, Lanes
from services.delivery._metrics import ATTEMPTS, DEFERRED, LATENCY, SKIPPED_BY_BREAKER
from services.delivery._schedule import RetryPolicy
from services.delivery._sender import HttpOutcome, Sender
from services.delivery._signing import signature_headers
from services.delivery._writer import RecordWriter
from shared.cloudevents import KafkaRecord, encode
from shared.config_view import ConfigView
from shared.deadletter import DeadLetters
from shared.entities import Subscription
from shared.errors import SecretError
from shared.messages import DeliveryOutcome
from shared.topics import Topics

log = logging.getLogger(__name__)

Write = tuple[str, KafkaRecord]
STALLED = "stalled"


@dataclass(frozen=True, slots=True)
class Queued:
    """A delivery's one write, queued in the writer's open batch: durable when ``written``
    resolves. The caller settles the source record then, from a callback, instead of a
    task waiting for it; if it fails, :meth:`Deliverer.write_durably` writes ``writes``."""

    written: asyncio.Future[None]
    writes: list[Write]


Step = Callable[[Due], Coroutine[Any, Any, Queued | None]]


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """The isolation knobs the attempt step needs (from settings, at construction)."""

    max_in_flight: int
    max_in_flight_per_subscription: int
    stall_after: float
    breaker_failure_threshold: int
    breaker_cooldown: float
    disable_after_failing_for: float
    abandon_after: float = 2.0


class _Secrets:
    """Decrypted active secrets per subscription, until one expires or the entity changes."""

    def __init__(self, view: ConfigView) -> None:
        self._view = view
        self._cache: dict[str, tuple[Subscription, list[str], float]] = {}

    def of(self, sub: Subscription, now: datetime) -> list[str]:
        hit = self._cache.get(sub.id)
        stamp = now.timestamp()
        if hit is not None and hit[0] is sub and stamp < hit[2]:
            return hit[1]
        secrets = self._view.secrets(sub, now)
        expiries = [
            s.expires_at.timestamp()
            for s in sub.secrets
            if s.expires_at is not None and s.active(now)
        ]
        self._cache[sub.id] = (sub, secrets, min(expiries, default=float("inf")))
        return secrets


class Deliverer:
    """Sends due deliveries and records what happened; shared by every consumer loop."""

    def __init__(
        self,
        *,
        view: ConfigView,
        sender: Sender,
        writer: RecordWriter,
        topics: Topics,
        dead_letters: DeadLetters,
        policy: RetryPolicy,
        limits: DeliveryLimits,
    ) -> None:
        self._view = view
        self._sender = sender
        self._writer = writer
        self._topics = topics
        self._dead_letters = dead_letters
        self._policy = policy
        self._limits = limits
        self._breakers = CircuitBreakers(limits.breaker_failure_threshold, limits.breaker_cooldown)
        self._streaks = FailingStreaks()
        self._lanes = Lanes(
            limits.max_in_flight_per_subscription, limits.stall_after, limits.abandon_after
        )
        self._slots = asyncio.Semaphore(limits.max_in_flight)
        self._secrets = _Secrets(view)
        self._abandoned: set[asyncio.Timeout] = set()
        self._disabled: set[tuple[str, int]] = set()
        self._outcomes = {o: ATTEMPTS.labels(o) for o in get_args(DeliveryOutcome)}
        self._watchdog: asyncio.Task[None] | None = None
        self.stopping = False

    async def __aenter__(self) -> Self:
        self._watchdog = asyncio.create_task(self._watch(), name="delivery-stall-watchdog")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None

    async def _watch(self) -> None:
        period = max(0.05, min(self._limits.stall_after, self._limits.abandon_after) / 2)
        while True:
            await asyncio.sleep(period)
            self._lanes.wake_stalled()
            expired = self._lanes.abandon_overdue(suspect=self._breakers.is_open)
            if expired:
                self._abandoned.update(expired)
                log.warning("gave up requests of a stalled lane", extra={"count": len(expired)})

    @property
    def breakers(self) -> CircuitBreakers:
        return self._breakers

    async def step_for(self, subscription_id: str) -> Step:
        """What to do with the next due delivery of a subscription; for the consumer loops,
        which hand on what an open breaker blocks themselves (:meth:`skip_writes`).

        Backpressure: wait while the subscription's queue is full, then :meth:`deliver`;
        or :meth:`defer` when its receiver is stalled.
        """
        return self.deliver if await self._lanes.admit(subscription_id) else self.defer

    async def deliver(self, due: Due) -> Queued | None:
        """Attempt an admitted ``due`` (or skip or defer it) and make the outcome durable,
        or, for a single write (a success), queue it and say so (:class:`Queued`)."""
        writes = await self._attempt(due)
        queued = self.queue(writes)
        if queued is None:
            await self.write_durably(writes)
        return queued

    def skip_writes(self, due: Due) -> list[Write]:
        """What handing ``due`` on past an open breaker writes (usually its next tier)."""
        sub = self._view.subscription(due.subscription_id)
        if sub is None or not sub.enabled:
            reason = "subscription deleted" if sub is None else "subscription disabled"
            return [self._record(due, "skipped", error=reason, url=sub.url if sub else None)]
        return self._after_failure(due, sub, error="circuit_open", outcome="skipped")

    def queue(self, writes: list[Write]) -> Queued | None:
        """Queue a single write in the writer's open batch, without a task; None when
        the writes need the full path (:meth:`write_durably`)."""
        if len(writes) != 1:
            return None
        topic, record = writes[0]
        written = self._writer.write_nowait(topic, record)
        return None if written is None else Queued(written, writes)

    async def defer(self, due: Due) -> None:
        """Hand ``due`` to its retry tier unchanged, due later, without a request."""
        await self.write_durably([self._defer(due)])

    # -- the attempt ----------------------------------------------------------------------

    async def _attempt(self, due: Due) -> list[Write]:
        sub = self._view.subscription(due.subscription_id)
        if sub is None or not sub.enabled:
            self._lanes.withdraw(due.subscription_id)
            reason = "subscription deleted" if sub is None else "subscription disabled"
            return [self._record(due, "skipped", error=reason, url=sub.url if sub else None)]
        if self._breakers.blocked(sub.id):
            self._lanes.withdraw(sub.id)
            return self._after_failure(due, sub, error="circuit_open", outcome="skipped")
        if not await self._lanes.acquire(sub.id):
            return [self._defer(due)]
        try:
            # Asked again with the slot in hand: failures may have opened it meanwhile.
            if not self._breakers.allow(sub.id):
                return self._after_failure(due, sub, error="circuit_open", outcome="skipped")
            async with self._slots:
                result = await self._send(due, sub)
        finally:
            self._lanes.release(sub.id)
        LATENCY.observe(result.latency_ms / 1000)
        if result.succeeded:
            self._breakers.record_success(sub.id)
            self._streaks.record_success(sub.id)
            return [self._record(due, "succeeded", result=result, url=sub.url)]
        if result.status_code == 410:
            return self._disable(due, sub, "the receiver answered 410 Gone", result)
        self._breakers.record_failure(sub.id)
        return self._after_failure(due, sub, result=result)

    async def _send(self, due: Due, sub: Subscription) -> HttpOutcome:
        now = datetime.now(UTC)
        try:
            secrets = self._secrets.of(sub, now)
            custom = self._view.headers(sub)
        except SecretError:
            log.error("subscription secret does not decrypt", extra={"subscription": sub.id})
            return HttpOutcome(None, "secret_error", 0.0)
        body = due.body.encode()
        headers = signature_headers(due.message_id, body, secrets, now)
        headers["content-type"] = "application/json"
        if custom:
            # The subscription's own headers, never over the webhook ones.
            headers = {**custom, **headers}
        started = time.perf_counter()
        # One deadline scope for the request: the sender's own timeout, which the stall
        # watchdog may also bring forward (it then notes the scope as abandoned).
        scope = asyncio.timeout(self._sender.request_timeout)
        try:
            async with scope:
                self._lanes.sending(sub.id, scope)
                try:
                    return await self._sender.send(sub.url, headers, body, scope)
                finally:
                    self._lanes.sent(sub.id, scope)
        except TimeoutError:
            error = STALLED if scope in self._abandoned else "timeout"
            return HttpOutcome(None, error, (time.perf_counter() - started) * 1000)
        finally:
            self._abandoned.discard(scope)

    def _after_failure(
        self,
        due: Due,
        sub: Subscription,
        *,
        result: HttpOutcome | None = None,
        error: str | None = None,
        outcome: DeliveryOutcome = "failed",
    ) -> list[Write]:
        now = datetime.now(UTC)
        began = min(now.timestamp(), due.first_attempted_at.timestamp())
        streak_start = self._streaks.record_failure(sub.id, began)
        if now.timestamp() - streak_start >= self._limits.disable_after_failing_for:
            since = datetime.fromtimestamp(streak_start, UTC).isoformat()
            return self._disable(due, sub, f"failing continuously since {since}", result, error)
        if self._policy.exhausted(due.attempt):
            return [
                self._dead_letter(due),
                self._record(due, "exhausted", result=result, error=error, url=sub.url),
            ]
        retry_after = result.retry_after if result is not None else None
        next_at = self._policy.next_due(due.attempt, now, retry_after)
        following = due.later(next_at, attempt=due.attempt + 1)
        if outcome == "skipped":
            # Passed over by an open breaker: no request, so no attempt record. The log
            # holds requests and how deliveries end; a dead receiver's every hand-on would
            # double its writes and crowd real attempts out of the log.
            SKIPPED_BY_BREAKER.inc()
            return [self._to_tier(following, now)]
        return [
            self._to_tier(following, now),
            self._record(
                due, outcome, result=result, error=error, url=sub.url, next_attempt_at=next_at
            ),
        ]

    def _disable(
        self,
        due: Due,
        sub: Subscription,
        reason: str,
        result: HttpOutcome | None,
        error: str | None = None,
    ) -> list[Write]:
        self._breakers.forget(sub.id)
        self._streaks.forget(sub.id)
        writes: list[Write] = []
        if (sub.id, sub.version) not in self._disabled:
            self._disabled.add((sub.id, sub.version))
            now = datetime.now(UTC)
            disabled = sub.model_copy(
                update={
                    "enabled": False,
                    "disabled_reason": reason,
                    "version": sub.version + 1,
                    "updated_at": now,
                }
            )
            log.warning("subscription disabled", extra={"subscription": sub.id, "reason": reason})
            writes.append((self._topics.config, encode(disabled, key=disabled.key, source=SOURCE)))
        note = error or reason
        writes.append(self._record(due, "disabled", result=result, error=note, url=sub.url))
        return writes

    # -- hand-offs ------------------------------------------------------------------------

    def _defer(self, due: Due) -> Write:
        """The lane is full: same attempt, later, on its tier; no request was made."""
        DEFERRED.inc()
        now = datetime.now(UTC)
        return self._to_tier(due.later(now + timedelta(seconds=self._policy.gap(1))), now)

    def _to_tier(self, due: Due, now: datetime) -> Write:
        return self._topics.retry_tier(due.attempt), due_record(due, now)

    def _dead_letter(self, due: Due) -> Write:
        record = encode(due.to_message(), key=due.subscription_id, source=SOURCE)
        topic, partition, offset = due.source
        headers = self._dead_letters.record_headers(
            headers=record.headers,
            reason=f"delivery exhausted after {due.attempt} attempts",
            code="delivery_exhausted",
            source_topic=topic,
            partition=partition,
            offset=offset,
        )
        return self._dead_letters.topic, KafkaRecord(record.key, record.value, headers)

    def _record(
        self,
        due: Due,
        outcome: DeliveryOutcome,
        *,
        result: HttpOutcome | None = None,
        error: str | None = None,
        url: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> Write:
        self._outcomes[outcome].inc()
        now = datetime.now(UTC)
        if result is None:
            record = attempt_record(
                due, outcome, now, error=error, url=url, next_attempt_at=next_attempt_at
            )
        else:
            record = attempt_record(
                due,
                outcome,
                now,
                status_code=result.status_code,
                error=result.error or error,
                latency_ms=round(result.latency_ms, 3),
                excerpt=result.excerpt,
                next_attempt_at=next_attempt_at,
                url=url,
            )
        return self._topics.delivery_attempts, record

    async def write_durably(self, writes: list[Write]) -> None:
        """Send every write and wait for acks=all; retry until it holds or the service stops."""
        backoff = 0.2
        while writes:
            futures = [await self._writer.write(topic, rec) for topic, rec in writes]
            failed: list[Write] = []
            # Awaited one by one: cheaper than a gather, and every ack is awaited all the same.
            for write, future in zip(writes, futures, strict=True):
                try:
                    await future
                except Exception:  # any failure means: send it again
                    failed.append(write)
            if not failed:
                return
            log.warning(
                "delivery hand-off not acknowledged; retrying", extra={"writes": len(failed)}
            )
            if self.stopping:
                raise KafkaError("hand-off not acknowledged before shutdown")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            writes = failed
