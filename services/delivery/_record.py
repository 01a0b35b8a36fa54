"""Record: what an attempt's outcome writes, as a list of (topic, record) pairs.

The attempt record on ``delivery-attempts`` and, where the delivery is not finished,
its hand-off: the next retry tier (or, for a delivery of an ordered run, its entry in
the hold store), the dlq (attempts used up), or a disabled subscription on ``config``;
and the operational events these tell (:mod:`._notices`). Nothing here touches the
network or Kafka; the settle step makes the writes durable. The outcome of each request
also feeds the circuit breaker and the failing streak (which the admission step reads).

A subscription with a retry schedule of its own is retried on it: its next attempt
waits on the tier whose gap is the shortest not below its own gap (the longest tier when
none is), so it never holds up the deliveries already waiting on that tier; it may wait
behind them, up to that tier's gap.
"""

from __future__ import annotations

import bisect
import logging
import time
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
from services.delivery._notices import Notices, host_of
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
        notices: Notices | None = None,
        max_attempts: int = 20,
    ) -> None:
        self._topics = topics
        self._dead_letters = dead_letters
        self._policy = policy
        self._breakers = breakers
        self._streaks = streaks
        self._disable_after = disable_after_failing_for
        self._notices = notices or Notices(topics.workflow_events)
        self._max_attempts = max_attempts
        self._disabled: set[tuple[str, int]] = set()
        self._outcomes = {o: ATTEMPTS.labels(o) for o in get_args(DeliveryOutcome)}
        # The tiers by their gap, for schedules of a subscription's own.
        order = sorted(range(len(policy.schedule)), key=lambda i: policy.schedule[i])
        self._tier_gaps = [policy.schedule[i] for i in order]
        self._tier_by_gap = [topics.retry_tiers[min(i, len(topics.retry_tiers) - 1)] for i in order]
        self._policies: dict[tuple[float, ...], RetryPolicy] = {}

    def policy(self, sub: Subscription) -> RetryPolicy:
        """``sub``'s own schedule, where it has one (within the service's bounds)."""
        if sub.retry_schedule is None:
            return self._policy
        schedule = tuple(sub.retry_schedule[: self._max_attempts - 1])
        policy = self._policies.get(schedule)
        if policy is None:
            if len(self._policies) >= 1024:
                self._policies.clear()
            longest = max(self._policy.schedule, default=0.0)
            policy = RetryPolicy(
                [min(max(g, 0.0), longest) for g in schedule], jitter=self._policy.jitter
            )
            self._policies[schedule] = policy
        return policy

    def answered(self, due: Due, sub: Subscription, result: HttpOutcome) -> list[Write]:
        """What one request's ``result`` writes."""
        LATENCY.observe(result.latency_ms / 1000)
        if result.succeeded:
            was_open = self._breakers.record_success(sub.id)
            since = self._streaks.record_success(sub.id)
            written = [self._attempt(due, "succeeded", result=result, url=sub.url)]
            if was_open or (
                since is not None and time.time() - since >= self._notices.recovered_after
            ):
                now = time.time()
                written += self._notices.recovered(sub, since if since is not None else now)
            return written
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
        return self._later(due.later(now + timedelta(seconds=self._policy.gap(1))), now)

    def deferred_until(self, due: Due, when: datetime) -> list[Write]:
        """Same attempt at ``when``, on the tier for that wait; no request was made."""
        now = datetime.now(UTC)
        return self._later(due.later(when), now, gap=(when - now).total_seconds())

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
        policy = self._policy if sub.retry_schedule is None else self.policy(sub)
        if policy.exhausted(due.attempt):
            reason = f"delivery exhausted after {due.attempt} attempts"
            status = result.status_code if result is not None else None
            return [
                dead_letter(self._dead_letters, due, reason, "delivery_exhausted"),
                self._attempt(due, "exhausted", result=result, error=error, url=sub.url),
                *self._notices.exhausted(due, sub, status, (result and result.error) or error),
            ]
        retry_after = result.retry_after if result is not None else None
        next_at = policy.next_due(due.attempt, now, retry_after)
        following = due.later(next_at, attempt=due.attempt + 1)
        if tracing.enabled:
            following = next_attempt(following, result)
        if policy is self._policy:
            later = self._later(following, now)
        else:
            later = self._later(following, now, gap=policy.gap(due.attempt))
        if outcome == "skipped":
            SKIPPED_BY_BREAKER.inc()
            return later
        return [
            *later,
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
            log.warning(
                "subscription disabled",
                extra={"subscription": sub.id, "host": host_of(sub.url), "reason": reason},
            )
            writes.append((self._topics.config, encode(disabled, key=disabled.key, source=SOURCE)))
            writes += self._notices.disabled(sub, reason, disabled.version)
        note = error or reason
        writes.append(self._attempt(due, "disabled", result=result, error=note, url=sub.url))
        return writes

    def _later(self, due: Due, now: datetime, gap: float | None = None) -> list[Write]:
        """Where ``due`` waits: its ordered run's entry in the hold store, or a retry tier
        (by its attempt, or by ``gap`` for a wait of a schedule other than the service's)."""
        ticket = due.ticket
        if ticket is not None and ticket.chain is not None:
            return ticket.hold_again(due, "ordered", due.due_at)
        topic = self._topics.retry_tier(due.attempt) if gap is None else self._tier_for(gap)
        count_retry(due.attempt)
        return [(topic, due_record(due, now))]

    def _tier_for(self, gap: float) -> str:
        """The tier whose gap is the shortest not below ``gap`` (the longest when none is)."""
        gaps = self._tier_gaps
        if not gaps:
            return self._topics.retry_tiers[0]
        return self._tier_by_gap[min(bisect.bisect_left(gaps, gap), len(gaps) - 1)]

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
