"""Record: what an attempt's outcome writes, as a list of (topic, record) pairs.

The attempt record on ``delivery-attempts`` and, where the delivery is not finished,
its hand-off: the next retry tier, the dlq (attempts used up), or a disabled
subscription on ``config``. Nothing here touches the network or Kafka; the settle
step makes the writes durable. The outcome of each request also feeds the circuit
breaker and the failing streak (which the admission step reads).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import get_args

from services.delivery._codec import SOURCE, Due, attempt_record, due_record
from services.delivery._isolation import CircuitBreakers, FailingStreaks
from services.delivery._metrics import (
    ATTEMPTS,
    DEFERRED,
    LATENCY,
    SKIPPED_BY_BREAKER,
    count_retry,
)
from services.delivery._schedule import RetryPolicy
from services.delivery._sender import HttpOutcome
from services.delivery._tracing import next_attempt
from shared import tracing
from shared.cloudevents import KafkaRecord, encode
from shared.deadletter import DeadLetters
from shared.entities import Subscription
from shared.messages import DeliveryOutcome
from shared.topics import Topics

log = logging.getLogger(__name__)

Write = tuple[str, KafkaRecord]


def dead_letter(dead_letters: DeadLetters, due: Due, reason: str, code: str) -> Write:
    """``due`` as a ``hookline.delivery.due`` record for the dlq, with the reason in headers."""
    record = encode(due.to_message(), key=due.subscription_id, source=SOURCE)
    topic, partition, offset = due.source
    headers = dead_letters.record_headers(
        headers=record.headers,
        reason=reason,
        code=code,
        source_topic=topic,
        partition=partition,
        offset=offset,
    )
    return dead_letters.topic, KafkaRecord(record.key, record.value, headers)


class Recorder:
    """Turns outcomes into writes; the breakers and streaks learn from each request."""

    def __init__(
        self,
        *,
        topics: Topics,
        dead_letters: DeadLetters,
        policy: RetryPolicy,
        breakers: CircuitBreakers,
        streaks: FailingStreaks,
        disable_after_failing_for: float,
    ) -> None:
        self._topics = topics
        self._dead_letters = dead_letters
        self._policy = policy
        self._breakers = breakers
        self._streaks = streaks
        self._disable_after = disable_after_failing_for
        self._disabled: set[tuple[str, int]] = set()
        self._outcomes = {o: ATTEMPTS.labels(o) for o in get_args(DeliveryOutcome)}

    def answered(self, due: Due, sub: Subscription, result: HttpOutcome) -> list[Write]:
        """What one request's ``result`` writes."""
        LATENCY.observe(result.latency_ms / 1000)
        if result.succeeded:
            self._breakers.record_success(sub.id)
            self._streaks.record_success(sub.id)
            return [self._attempt(due, "succeeded", result=result, url=sub.url)]
        if result.status_code == 410:
            return self._disable(due, sub, "the receiver answered 410 Gone", result)
        self._breakers.record_failure(sub.id)
        return self._after_failure(due, sub, result=result)

    def skipped(self, due: Due, sub: Subscription | None) -> list[Write]:
        """``due``'s subscription was deleted or disabled: the delivery ends here."""
        reason = "subscription deleted" if sub is None else "subscription disabled"
        return [self._attempt(due, "skipped", error=reason, url=sub.url if sub else None)]

    def circuit_open(self, due: Due, sub: Subscription) -> list[Write]:
        """Handed on past an open breaker: no request, so no attempt record (the log holds
        requests and how deliveries end; a dead receiver's every hand-on would double its
        writes and crowd real attempts out of the log)."""
        return self._after_failure(due, sub, error="circuit_open", outcome="skipped")

    def deferred(self, due: Due) -> list[Write]:
        """The lane is stalled: same attempt, later, on its tier; no request was made."""
        DEFERRED.inc()
        now = datetime.now(UTC)
        return [self._to_tier(due.later(now + timedelta(seconds=self._policy.gap(1))), now)]

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
        if now.timestamp() - streak_start >= self._disable_after:
            since = datetime.fromtimestamp(streak_start, UTC).isoformat()
            return self._disable(due, sub, f"failing continuously since {since}", result, error)
        if self._policy.exhausted(due.attempt):
            reason = f"delivery exhausted after {due.attempt} attempts"
            return [
                dead_letter(self._dead_letters, due, reason, "delivery_exhausted"),
                self._attempt(due, "exhausted", result=result, error=error, url=sub.url),
            ]
        retry_after = result.retry_after if result is not None else None
        next_at = self._policy.next_due(due.attempt, now, retry_after)
        following = due.later(next_at, attempt=due.attempt + 1)
        if tracing.enabled:
            following = next_attempt(following, result)
        if outcome == "skipped":
            SKIPPED_BY_BREAKER.inc()
            return [self._to_tier(following, now)]
        return [
            self._to_tier(following, now),
            self._attempt(
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
        writes.append(self._attempt(due, "disabled", result=result, error=note, url=sub.url))
        return writes

    def _to_tier(self, due: Due, now: datetime) -> Write:
        count_retry(due.attempt)
        return self._topics.retry_tier(due.attempt), due_record(due, now)

    def _attempt(
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
