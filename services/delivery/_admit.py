"""Admit: a due delivery becomes a request, a hand-on past an open breaker, or a deferral.

Per due delivery, in order:

1. Its subscription deleted or disabled: a ``skipped`` record, settled.
   Paused, or rate limited: the controls decide (:mod:`._controls`): held, waiting for
   its rate's slot, or on (a subscription with neither costs a field check each).
2. A request slot free at once in its lane (nothing waiting before it): taken now.
   Otherwise it waits for a place in the lane's queue (backpressure: the consumer
   waits with it), or, when the lane is stalled, it is deferred (same attempt, on
   its tier, due after the first gap, no attempt record); once queued, a task waits
   for a slot (and defers the delivery when the lane stalls meanwhile).
3. With the slot in hand, the circuit breaker is asked, here and nowhere else: open,
   the delivery is handed on to its next tier without a request (no attempt record)
   and the slot goes back at once; closed or half-open, the request goes out.

A subscription whose breaker is open finds its lane empty, so its hand-ons take
the first path: decided without a task, their writes queued and settled from the
batch's acknowledgement. Whatever a delivery ends with goes to the settle step,
the one path by which its record settles; a step that raises sends the delivery
to the dlq there, so no record is left unsettled by a failure.

Lifecycle: :meth:`drain` waits (until a deadline) for the deliveries in flight and
cancels the rest; their records stay uncommitted and are read again after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from services.delivery._attempt import Attempts
from services.delivery._codec import Due
from services.delivery._commit import Origin
from services.delivery._isolation import CircuitBreakers, Lanes
from services.delivery._record import Recorder, Write
from services.delivery._settle import Settlement
from shared.config_view import ConfigView
from shared.entities import Subscription

if TYPE_CHECKING:
    from services.delivery._controls import Controls

log = logging.getLogger(__name__)


class Admission:
    """Takes each due delivery from the sources to its request, hand-on or deferral."""

    def __init__(
        self,
        *,
        view: ConfigView,
        lanes: Lanes,
        breakers: CircuitBreakers,
        attempts: Attempts,
        recorder: Recorder,
        settlement: Settlement,
    ) -> None:
        self._view = view
        self._lanes = lanes
        self._breakers = breakers
        self._attempts = attempts
        self._recorder = recorder
        self._settlement = settlement
        self.controls: Controls | None = None
        # Each delivery task and its coroutine: one cancelled before it started is
        # closed at drain, so it is not reported as never awaited.
        self._tasks: dict[asyncio.Task[None], Coroutine[Any, Any, None]] = {}

    async def admit(self, ledger: Origin, offset: int, due: Due, *, rated: bool = False) -> None:
        """Start ``due`` (of the record at ``offset``); returns once it holds its place.
        ``rated``: its rate limit has given it its slot already."""
        try:
            sub = self._view.subscription(due.subscription_id)
            if sub is None or not sub.enabled:
                self.settle(ledger, offset, due, self._recorder.skipped(due, sub))
            elif sub.paused or (sub.rate_limit is not None and not rated):
                assert self.controls is not None
                await self.controls.admit(ledger, offset, due, sub)
            elif self._lanes.try_acquire(sub.id):
                if self._cleared(ledger, offset, due, sub):
                    self._spawn(self._deliver(ledger, offset, due, sub))
            elif await self._lanes.admit(sub.id):
                self._spawn(self._queued(ledger, offset, due))
            else:
                self.settle(ledger, offset, due, self._recorder.deferred(due))
        except Exception as exc:
            self.settle(ledger, offset, due, self._settlement.step_failed(due, exc))

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self._view.subscription(subscription_id)

    def settle(self, ledger: Origin, offset: int, due: Due, writes: list[Write]) -> None:
        """Settle through the one settle path; a delivery the hold store answers for
        takes its entry's tombstone along when this outcome ends its hold."""
        if due.ticket is not None:
            writes = due.ticket.closing(writes)
        self._settlement.settle(ledger, offset, due, writes)

    def _cleared(self, ledger: Origin, offset: int, due: Due, sub: Subscription) -> bool:
        """The slot is in hand: the one place the breaker is asked (it may claim the
        half-open probe). False when the delivery was handed on instead."""
        if self._breakers.allow(sub.id):
            return True
        self._lanes.release(sub.id)
        self.settle(ledger, offset, due, self._recorder.circuit_open(due, sub))
        return False

    async def _queued(self, ledger: Origin, offset: int, due: Due) -> None:
        """Wait for a request slot, then go on as if it had been free."""
        try:
            if not await self._lanes.acquire(due.subscription_id):
                writes = self._recorder.deferred(due)
            else:
                # Looked up again: the subscription may have changed while it waited.
                sub = self._view.subscription(due.subscription_id)
                if sub is not None and sub.enabled:
                    if self._cleared(ledger, offset, due, sub):
                        await self._deliver(ledger, offset, due, sub)
                    return
                self._lanes.release(due.subscription_id)
                writes = self._recorder.skipped(due, sub)
        except Exception as exc:
            writes = self._settlement.step_failed(due, exc)
        finally:
            # Here rather than a done callback: one scheduled callback fewer per delivery.
            self._tasks.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        self.settle(ledger, offset, due, writes)

    async def _deliver(self, ledger: Origin, offset: int, due: Due, sub: Subscription) -> None:
        """One request and what it writes."""
        try:
            result = await self._attempts.send(due, sub)
            writes = self._recorder.answered(due, sub, result)
        except Exception as exc:
            writes = self._settlement.step_failed(due, exc)
        finally:
            self._tasks.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        if due.ticket is not None:  # inlined settle(): the one path every request takes
            writes = due.ticket.closing(writes)
        self._settlement.settle(ledger, offset, due, writes)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a delivery task (drained and cancelled with the others)."""
        self._spawn(work)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks[asyncio.create_task(work)] = work

    async def drain(self, deadline: float) -> None:
        """Wait until ``deadline`` for the deliveries in flight; cancel the rest."""
        left = deadline - time.monotonic()
        if self._tasks and left > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        leftovers = dict(self._tasks)
        for task in leftovers:
            task.cancel()
        if leftovers:
            log.warning(
                "deliveries still in flight at shutdown; their records stay uncommitted",
                extra={"count": len(leftovers)},
            )
            await asyncio.gather(*leftovers, return_exceptions=True)
            for task, work in leftovers.items():
                work.close()
                self._tasks.pop(task, None)
