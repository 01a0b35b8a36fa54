"""Admission's other path: paused subscriptions and rate limits.

A due delivery of a paused subscription makes no request and uses up no attempt: it is
held (:mod:`._holds`) when this replica reads its source partition (a first attempt, or
a held delivery let go), and waits there until the subscription is resumed; a delivery
from a retry tier goes back to a tier instead and looks again later (a quarter of the
time it has waited, between the first gap and five minutes).

A rate-limited subscription's delivery asks its bucket (:mod:`._ratelimit`): it goes at
once, or waits in memory for its slot (a delivery task; other subscriptions go on), or
is held back until the slot the bucket names, the same way a paused one is held (from a
retry tier: deferred on the tier for that wait). A delivery of an ordered run is held
again under its own entry either way, so the run keeps its order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.delivery._admit import Admission
from services.delivery._codec import Due
from services.delivery._commit import Origin, PartitionLedger
from services.delivery._metrics import RATE_LIMITED
from services.delivery._ratelimit import RateLimits
from services.delivery._record import Recorder
from services.delivery._settle import Settlement
from shared.entities import Subscription
from shared.messages import HoldReason

RECHECK_AT_MOST = 300.0


class _Queue:
    """A rate-limited subscription's deliveries waiting in memory for their tokens."""

    __slots__ = ("items", "running")

    def __init__(self) -> None:
        self.items: deque[tuple[Origin, int, Due]] = deque()
        self.running = False


class Controls:
    def __init__(
        self,
        *,
        admission: Admission,
        limits: RateLimits,
        recorder: Recorder,
        settlement: Settlement,
        first_gap: float,
    ) -> None:
        self._admission = admission
        self._limits = limits
        self._recorder = recorder
        self._settlement = settlement
        self._first_gap = first_gap
        self._queues: dict[str, _Queue] = {}
        admission.controls = self

    async def admit(self, origin: Origin, offset: int, due: Due, sub: Subscription) -> None:
        if sub.paused:
            self._hold(origin, offset, due, "paused", None)
            return
        limit = sub.rate_limit
        assert limit is not None
        ticket = due.ticket
        back = (
            ticket is not None and ticket.held is not None and ticket.held.reason == "rate_limited"
        )
        queue = self._queues.get(sub.id)
        queued = len(queue.items) if queue is not None else 0
        wait = self._limits.take(sub.id, limit, queued=queued, held=back)
        if wait == 0.0:
            await self._admission.admit(origin, offset, due, rated=True)
            return
        RATE_LIMITED.inc()
        if wait is None:
            later = self._limits.later(sub.id, limit, queued=queued)
            self._hold(origin, offset, due, "rate_limited", _in(later))
            return
        if queue is None:
            queue = self._queues[sub.id] = _Queue()
        queue.items.append((origin, offset, due))
        if not queue.running:
            queue.running = True
            self._admission.spawn(self._pace(sub.id, queue))

    async def _pace(self, subscription_id: str, queue: _Queue) -> None:
        """Let the queue's deliveries go one token at a time, each when its token comes."""
        try:
            while queue.items:
                sub = self._admission.subscription(subscription_id)
                if sub is None or sub.rate_limit is None or sub.paused:
                    wait: float | None = 0.0  # no longer limited: admission decides
                else:
                    wait = self._limits.take(sub.id, sub.rate_limit, held=True)
                if wait is None:  # the share shrank under it: the rest are held back
                    for origin, offset, due in queue.items:
                        assert sub is not None and sub.rate_limit is not None
                        later = self._limits.later(sub.id, sub.rate_limit)
                        self._hold(origin, offset, due, "rate_limited", _in(later))
                    queue.items.clear()
                elif wait > 0:
                    await asyncio.sleep(wait)
                else:
                    origin, offset, due = queue.items.popleft()
                    await self._admission.admit(origin, offset, due, rated=True)
        finally:
            queue.running = False
            if not queue.items and self._queues.get(subscription_id) is queue:
                del self._queues[subscription_id]

    def _hold(
        self, origin: Origin, offset: int, due: Due, reason: HoldReason, at: datetime | None
    ) -> None:
        ticket = due.ticket
        if ticket is not None and (ticket.chain is not None or ticket.held is not None):
            # Ordered, or held before and let go: held again under its own entry.
            self._admission.settle(origin, offset, due, ticket.hold_again(due, reason, at))
            return
        part = origin.holds if isinstance(origin, PartitionLedger) else None
        if part is not None and not part.revoked and part.ready:
            assert isinstance(origin, PartitionLedger)
            if part.has(due.subscription_id, offset):
                origin.settle(offset)  # held already (the record was read again)
                return
            held, writes = part.hold(origin, due, reason, at)
            self._settlement.settle(held, offset, replace(due, ticket=held), writes)
            return
        # From a retry tier: back to a tier, to look again later.
        if at is None:
            waited = (datetime.now(UTC) - due.first_attempted_at).total_seconds()
            look = min(max(self._first_gap, waited / 4), RECHECK_AT_MOST)
            at = datetime.now(UTC) + timedelta(seconds=look)
        self._admission.settle(origin, offset, due, self._recorder.deferred_until(due, at))


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
