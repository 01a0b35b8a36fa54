"""Operational events: what the delivery service tells an operations channel.

``subscription.disabled`` (hookline disabled it: a ``410 Gone``, or failing too long),
``delivery.exhausted`` (a delivery ran out of attempts) and ``subscription.recovered``
(a success after failures that had opened its breaker, or had lasted ``recovered_after``
seconds) are written to ``workflow-events``, keyed by the subscription they are about,
with the writes of the outcome that caused them (durable before its record settles).
The intake delivers them like lifecycle events to the subscriptions that name their type.

No storm, no loop: a delivery *of* an operational event that runs out of attempts tells
nothing (an operations receiver that is down would otherwise hear of its own failures
forever); ``subscription.disabled`` is told once per disabling version and is never
delivered to the subscription it names; ``delivery.exhausted`` is told at most once per
``every`` seconds per subscription and replica, the next one counting the ones left
out. Event ids name what they tell (``subscription.disabled:<id>:<version>``,
``delivery.exhausted:<delivery id>``), and deliveries of them take their webhook-id from
it, so two replicas telling the same thing reach a receiver with one webhook-id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from services.delivery._codec import SOURCE, Due
from shared.cloudevents import KafkaRecord, encode
from shared.entities import Subscription
from shared.messages import (
    OPERATIONAL_EVENT_TYPES,
    DeliveryExhausted,
    OperationalEvent,
    SubscriptionDisabled,
    SubscriptionRecovered,
)

Write = tuple[str, KafkaRecord]


def host_of(url: str) -> str | None:
    """What a log line or a notice may say of a receiver: its host, never its URL."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


class Notices:
    def __init__(
        self,
        topic: str,
        *,
        every: float = 60.0,
        recovered_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._topic = topic
        self._every = every
        self.recovered_after = recovered_after
        self._clock = clock
        # Per subscription: when the next delivery.exhausted may be told, and how many
        # were left out since the last one.
        self._exhausted: dict[str, tuple[float, int]] = {}

    def _write(self, event: OperationalEvent, event_id: str) -> Write:
        return self._topic, encode(
            event, key=event.subscription_id, source=SOURCE, event_id=event_id
        )

    def disabled(self, sub: Subscription, reason: str, version: int) -> list[Write]:
        event = SubscriptionDisabled(
            subscription_id=sub.id,
            host=host_of(sub.url),
            occurred_at=datetime.now(UTC),
            reason=reason,
            version=version,
        )
        return [self._write(event, f"subscription.disabled:{sub.id}:{version}")]

    def exhausted(
        self, due: Due, sub: Subscription, status_code: int | None, error: str | None
    ) -> list[Write]:
        if due.event_type in OPERATIONAL_EVENT_TYPES:
            return []  # an operations receiver's own failures are not told to it
        now = self._clock()
        next_at, left_out = self._exhausted.get(sub.id, (0.0, 0))
        if now < next_at:
            self._exhausted[sub.id] = (next_at, left_out + 1)
            return []
        self._exhausted[sub.id] = (now + self._every, 0)
        event = DeliveryExhausted(
            subscription_id=sub.id,
            host=host_of(sub.url),
            occurred_at=datetime.now(UTC),
            delivery_id=due.delivery_id,
            message_id=due.message_id,
            event_type=due.event_type,
            workflow_id=due.workflow_id,
            attempts=due.attempt,
            status_code=status_code,
            error=error,
            first_attempted_at=due.first_attempted_at,
            left_out=left_out,
        )
        return [self._write(event, f"delivery.exhausted:{due.delivery_id}")]

    def recovered(self, sub: Subscription, failing_since: float) -> list[Write]:
        since = datetime.fromtimestamp(failing_since, UTC)
        event = SubscriptionRecovered(
            subscription_id=sub.id,
            host=host_of(sub.url),
            occurred_at=datetime.now(UTC),
            failing_since=since,
        )
        return [self._write(event, f"subscription.recovered:{sub.id}:{int(failing_since)}")]
