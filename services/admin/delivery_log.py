"""The delivery log: the ``delivery-attempts`` topic followed into bounded memory.

Lifecycle: ``async with DeliveryLog(...)`` reads every partition of the topic
from the beginning and keeps following it; :meth:`DeliveryLog.wait_ready`
returns once it has read up to the end offsets seen at start. It holds the
attempts of at most ``max_deliveries`` deliveries in about ``max_bytes`` (the
least recently attempted are forgotten first), at most ``max_attempts``
attempts each (the first and the latest are kept), and one copy of a
delivery's body. A record that does not parse is logged and
skipped. Lookups are answered from memory.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.cloudevents import decode
from shared.errors import PoisonMessage
from shared.follower import TopicFollower
from shared.messages import DeliveryAttempted, DeliveryOutcome, SourceRecord

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeliveryRecord:
    """One delivery (one event to one subscription) and the attempts seen for it."""

    delivery_id: str
    attempts: list[DeliveryAttempted] = field(default_factory=list)
    body: str | None = None  # the latest body recorded (kept once, not per attempt)
    size: int = 0  # an estimate of the memory its attempts hold, in bytes

    @property
    def latest(self) -> DeliveryAttempted:
        return self.attempts[-1]

    @property
    def first(self) -> DeliveryAttempted:
        return self.attempts[0]

    @property
    def subscription_id(self) -> str:
        return self.latest.subscription_id

    @property
    def outcome(self) -> DeliveryOutcome:
        return self.latest.outcome

    @property
    def last_attempt_at(self) -> datetime:
        return self.latest.attempted_at

    @property
    def order_key(self) -> tuple[datetime, str]:
        return (self.latest.attempted_at, self.delivery_id)

    @property
    def source(self) -> SourceRecord | None:
        for attempt in reversed(self.attempts):
            if attempt.source is not None:
                return attempt.source
        return None


class DeliveryLog(TopicFollower):
    """Follows ``delivery-attempts``; answers queries about deliveries and their attempts."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        max_deliveries: int = 50_000,
        max_attempts: int = 50,
        max_bytes: int = 64 * 1024 * 1024,
        poll_timeout: float = 0.2,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            topic,
            client_id="hookline-admin-delivery-log",
            poll_timeout=poll_timeout,
        )
        self._max_deliveries = max_deliveries
        self._max_attempts = max(2, max_attempts)
        self._max_bytes = max_bytes
        self._bytes = 0
        self._deliveries: OrderedDict[str, DeliveryRecord] = OrderedDict()

    # -- queries --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._deliveries)

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        return self._deliveries.get(delivery_id)

    def query(
        self,
        *,
        subscription_id: str | None = None,
        event_type: str | None = None,
        outcome: str | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[DeliveryRecord]:
        """Matching deliveries, newest (latest attempt) first; ``before`` is a page's end."""
        found = [
            d
            for d in self._deliveries.values()
            if (subscription_id is None or d.subscription_id == subscription_id)
            and (event_type is None or d.latest.event_type == event_type)
            and (outcome is None or d.outcome == outcome)
            and (before is None or d.order_key < before)
        ]
        found.sort(key=lambda d: d.order_key, reverse=True)
        return found if limit is None else found[:limit]

    # -- applying -----------------------------------------------------------------------

    async def apply(self, record: Any) -> None:
        self.apply_records((record,))

    def apply_records(self, records: Iterable[Any]) -> None:
        for record in records:
            try:
                attempt = decode(record.headers, record.value, DeliveryAttempted).data
            except PoisonMessage as exc:
                log.warning(
                    "skipping invalid delivery attempt record",
                    extra={
                        "partition": record.partition,
                        "offset": record.offset,
                        "reason": exc.reason,
                    },
                )
                continue
            self.add(attempt)

    def add(self, attempt: DeliveryAttempted) -> None:
        """Record one attempt (in the order the topic holds them)."""
        if attempt.attempted_at.tzinfo is None:  # a publisher that forgot the zone meant UTC
            attempt = attempt.model_copy(
                update={"attempted_at": attempt.attempted_at.replace(tzinfo=UTC)}
            )
        delivery = self._deliveries.get(attempt.delivery_id)
        if delivery is None:
            delivery = DeliveryRecord(attempt.delivery_id)
            self._deliveries[attempt.delivery_id] = delivery
        else:
            self._deliveries.move_to_end(attempt.delivery_id)
        if attempt.body is not None:
            # One copy of the body is enough: the latest one recorded.
            self._resize(delivery, len(attempt.body) - len(delivery.body or ""))
            delivery.body = attempt.body
            attempt = attempt.model_copy(update={"body": None})
        delivery.attempts.append(attempt)
        self._resize(delivery, _size(attempt))
        if len(delivery.attempts) > self._max_attempts:
            dropped = delivery.attempts.pop(1)  # keep the first and the latest
            self._resize(delivery, -_size(dropped))
        while self._deliveries and (
            len(self._deliveries) > self._max_deliveries or self._bytes > self._max_bytes
        ):
            _, evicted = self._deliveries.popitem(last=False)
            self._bytes -= evicted.size

    @property
    def size(self) -> int:
        """An estimate of the memory the log holds, in bytes."""
        return self._bytes

    def _resize(self, delivery: DeliveryRecord, delta: int) -> None:
        delivery.size += delta
        self._bytes += delta


def _size(attempt: DeliveryAttempted) -> int:
    texts = (attempt.response_excerpt, attempt.error, attempt.url)
    return 600 + sum(len(t) for t in texts if t)
