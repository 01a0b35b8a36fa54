"""One processing step: take a due delivery to a settled state.

:meth:`Deliverer.deliver` makes at most one request and returns once what
follows from it is durable in Kafka: the attempt record on ``delivery-attempts``
and, where the delivery is not finished, its hand-off (the next retry tier, the
dlq, or a disabled subscription on ``config``). Only then may the caller count
the delivery settled and let the source record's offset be committed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.delivery._isolation import CircuitBreakers, FailingStreaks, Lanes
from services.delivery._metrics import ATTEMPTS, DEFERRED, LATENCY
from services.delivery._schedule import RetryPolicy
from services.delivery._sender import HttpOutcome, Sender
from services.delivery._signing import signature_headers
from shared.cloudevents import KafkaRecord, encode
from shared.config_view import ConfigView
from shared.deadletter import DeadLetters
from shared.entities import Subscription
from shared.errors import SecretError
from shared.messages import DeliveryAttempted, DeliveryDue, DeliveryOutcome
from shared.topics import Topics

log = logging.getLogger(__name__)

SOURCE = "/hookline/delivery"
Write = tuple[str, KafkaRecord]


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """The isolation knobs the attempt step needs (from settings, at construction)."""

    max_in_flight: int
    max_in_flight_per_subscription: int
    stall_after: float
    breaker_failure_threshold: int
    breaker_cooldown: float
    disable_after_failing_for: float


class Deliverer:
    """Sends due deliveries and records what happened; shared by every consumer loop."""

    def __init__(
        self,
        *,
        view: ConfigView,
        sender: Sender,
        producer: AIOKafkaProducer,
        topics: Topics,
        dead_letters: DeadLetters,
        policy: RetryPolicy,
        limits: DeliveryLimits,
    ) -> None:
        self._view = view
        self._sender = sender
        self._producer = producer
        self._topics = topics
        self._dead_letters = dead_letters
        self._policy = policy
        self._limits = limits
        self._breakers = CircuitBreakers(limits.breaker_failure_threshold, limits.breaker_cooldown)
        self._streaks = FailingStreaks()
        self._lanes = Lanes(limits.max_in_flight_per_subscription, limits.stall_after)
        self._slots = asyncio.Semaphore(limits.max_in_flight)
        self._disabled: set[tuple[str, int]] = set()
        self.stopping = False

    @property
    def breakers(self) -> CircuitBreakers:
        return self._breakers

    async def admit(self, subscription_id: str) -> bool:
        """Backpressure for the consumer loops: wait while the subscription's queue is full.

        False means its receiver is stalled: hand the delivery to :meth:`defer`.
        """
        return await self._lanes.admit(subscription_id)

    async def deliver(self, due: DeliveryDue) -> None:
        """Attempt an admitted ``due`` (or skip or defer it) and make the outcome durable."""
        writes = await self._attempt(due)
        await self._write_durably(writes)

    async def defer(self, due: DeliveryDue) -> None:
        """Hand ``due`` to its retry tier unchanged, due later, without a request."""
        await self._write_durably([self._defer(due)])

    # -- the attempt ----------------------------------------------------------------------

    async def _attempt(self, due: DeliveryDue) -> list[Write]:
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

    async def _send(self, due: DeliveryDue, sub: Subscription) -> HttpOutcome:
        try:
            secrets = self._view.secrets(sub)
        except SecretError:
            log.error("subscription secret does not decrypt", extra={"subscription": sub.id})
            return HttpOutcome(None, "secret_error", 0.0)
        body = due.body.encode()
        headers = {**sub.headers, "content-type": "application/json"}
        headers.update(signature_headers(due.message_id, body, secrets, datetime.now(UTC)))
        return await self._sender.send(sub.url, headers, body)

    def _after_failure(
        self,
        due: DeliveryDue,
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
        following = due.model_copy(update={"attempt": due.attempt + 1, "due_at": next_at})
        return [
            self._to_tier(following),
            self._record(
                due, outcome, result=result, error=error, url=sub.url, next_attempt_at=next_at
            ),
        ]

    def _disable(
        self,
        due: DeliveryDue,
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

    def _defer(self, due: DeliveryDue) -> Write:
        """The lane is full: same attempt, later, on its tier; no request was made."""
        DEFERRED.inc()
        later = datetime.now(UTC) + timedelta(seconds=self._policy.gap(1))
        return self._to_tier(due.model_copy(update={"due_at": later}))

    def _to_tier(self, due: DeliveryDue) -> Write:
        topic = self._topics.retry_tier(due.attempt)
        return topic, encode(due, key=due.subscription_id, source=SOURCE)

    def _dead_letter(self, due: DeliveryDue) -> Write:
        record = encode(due, key=due.subscription_id, source=SOURCE)
        headers = self._dead_letters.record_headers(
            headers=record.headers,
            reason=f"delivery exhausted after {due.attempt} attempts",
            code="delivery_exhausted",
            source_topic=due.source.topic,
            partition=due.source.partition,
            offset=due.source.offset,
        )
        return self._dead_letters.topic, KafkaRecord(record.key, record.value, headers)

    def _record(
        self,
        due: DeliveryDue,
        outcome: DeliveryOutcome,
        *,
        result: HttpOutcome | None = None,
        error: str | None = None,
        url: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> Write:
        ATTEMPTS.labels(outcome).inc()
        attempted = DeliveryAttempted.model_construct(
            delivery_id=due.delivery_id,
            message_id=due.message_id,
            subscription_id=due.subscription_id,
            event_type=due.event_type,
            workflow_id=due.workflow_id,
            source=due.source,
            attempt=due.attempt,
            outcome=outcome,
            status_code=result.status_code if result else None,
            error=(result.error if result else None) or error,
            latency_ms=round(result.latency_ms, 3) if result else None,
            response_excerpt=result.excerpt if result else None,
            next_attempt_at=next_attempt_at,
            attempted_at=datetime.now(UTC),
            url=url,
            body=due.body,
        )
        topic = self._topics.delivery_attempts
        return topic, encode(attempted, key=due.subscription_id, source=SOURCE)

    async def _write_durably(self, writes: list[Write]) -> None:
        """Send every write and wait for acks=all; retry until it holds or the service stops."""
        backoff = 0.2
        while writes:
            futures = [
                await self._producer.send(topic, rec.value, key=rec.key, headers=rec.headers)
                for topic, rec in writes
            ]
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [w for w, r in zip(writes, results, strict=True) if isinstance(r, Exception)]
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
