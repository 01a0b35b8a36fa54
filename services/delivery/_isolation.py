"""Isolation between subscriptions: per-subscription lanes, circuit breakers, failing streaks.

None of these touch the network or Kafka; the attempt step consults them.
Time comes from ``time.monotonic`` unless a test passes its own clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(slots=True)
class _BreakerState:
    failures: int = 0
    opened_at: float | None = None
    probe_started: float | None = None


class CircuitBreakers:
    """One breaker per subscription: closed → open after consecutive failures → half-open.

    While open, :meth:`allow` says no; once the cool-down has passed it lets a
    single probe through (half-open); the probe's result closes or reopens it.
    A probe that never reports (deferred, cancelled) is replaced after another cool-down.
    """

    def __init__(self, threshold: int, cooldown: float, clock: Clock = time.monotonic) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._states: dict[str, _BreakerState] = {}

    def allow(self, subscription_id: str) -> bool:
        state = self._states.get(subscription_id)
        if state is None or state.opened_at is None:
            return True
        now = self._clock()
        if now - state.opened_at < self._cooldown:
            return False
        if state.probe_started is not None and now - state.probe_started < self._cooldown:
            return False
        state.probe_started = now
        return True

    def blocked(self, subscription_id: str) -> bool:
        """What :meth:`allow` would say no to, without claiming the half-open probe."""
        state = self._states.get(subscription_id)
        if state is None or state.opened_at is None:
            return False
        now = self._clock()
        if now - state.opened_at < self._cooldown:
            return True
        return state.probe_started is not None and now - state.probe_started < self._cooldown

    def is_open(self, subscription_id: str) -> bool:
        state = self._states.get(subscription_id)
        return state is not None and state.opened_at is not None

    def record_success(self, subscription_id: str) -> bool:
        """Close it; True when it had been open."""
        state = self._states.pop(subscription_id, None)
        return state is not None and state.opened_at is not None

    def record_failure(self, subscription_id: str) -> None:
        state = self._states.setdefault(subscription_id, _BreakerState())
        state.failures += 1
        state.probe_started = None
        if state.failures >= self._threshold:
            state.opened_at = self._clock()

    def forget(self, subscription_id: str) -> None:
        self._states.pop(subscription_id, None)

    def states(self) -> dict[str, int]:
        """How many breakers are open (cooling down) and half-open (a probe may go or
        is out), for the metrics; a closed breaker is not counted."""
        now = self._clock()
        counts = {"open": 0, "half_open": 0}
        for state in self._states.values():
            if state.opened_at is not None:
                cooling = now - state.opened_at < self._cooldown
                counts["open" if cooling else "half_open"] += 1
        return counts


class FailingStreaks:
    """Since when each subscription has failed without a single success (wall-clock seconds).

    A retried delivery carries its first attempt's time, so a streak survives a
    restart as soon as the first retry of it comes due.
    """

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def record_success(self, subscription_id: str) -> float | None:
        """End its streak; when the streak had begun, if it had one."""
        return self._since.pop(subscription_id, None)

    def record_failure(self, subscription_id: str, since: float) -> float:
        """Note a failure whose streak began no later than ``since``; return the streak's start."""
        current = self._since.get(subscription_id)
        start = since if current is None else min(current, since)
        self._since[subscription_id] = start
        return start

    def forget(self, subscription_id: str) -> None:
        self._since.pop(subscription_id, None)


class _Lane:
    __slots__ = (
        "freed",
        "gave_up",
        "in_flight",
        "last_progress",
        "queued",
        "requests",
        "waiters",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.queued = 0
        self.last_progress = time.monotonic()
        self.freed = asyncio.Event()
        # The timeout scope of each request being sent, and when it started: the
        # watchdog cuts short the ones a stalled lane has held too long.
        self.requests: dict[asyncio.Timeout, float] = {}
        # Deliveries waiting for a request slot, first come first served: a release
        # hands its slot to the first one directly (True), or a stall defers them (False).
        self.waiters: deque[asyncio.Future[bool]] = deque()
        # Requests were given up here and none has finished on its own since: the
        # receiver still looks hung, so a lone request is given up too (the lane is
        # no longer full once its first requests were given up).
        self.gave_up = False


class Lanes:
    """A cap on requests in flight per subscription, and on deliveries queued behind them.

    A lane is *stalled* when its cap of requests is on the wire and none has finished
    for ``stall_after`` seconds (a hung or very slow receiver). Admission
    (:meth:`admit`, called by the consumer loops) waits while a lane's queue is full
    and it is moving, which is ordinary backpressure; when it is stalled, admission
    says no at once and the caller defers the delivery to a retry tier, so a stuck
    receiver holds at most its cap of requests and never the other subscriptions.
    The requests a stalled lane has held for ``abandon_after`` seconds are given up
    (:meth:`abandon_overdue`), so they hold neither their source records nor the
    global pool until the request timeout.

    Waits carry no timers of their own: the owner calls :meth:`wake_stalled`
    periodically (the stall watchdog does), which defers what waits on a stalled lane.
    """

    def __init__(
        self, per_subscription: int, stall_after: float, abandon_after: float | None = None
    ) -> None:
        self._cap = per_subscription
        self._stall_after = stall_after
        self._abandon_after = stall_after if abandon_after is None else abandon_after
        self._lanes: dict[str, _Lane] = {}

    def _lane(self, subscription_id: str) -> _Lane:
        lane = self._lanes.get(subscription_id)
        if lane is None:
            lane = self._lanes[subscription_id] = _Lane()
        return lane

    def _is_stalled(self, lane: _Lane, now: float) -> bool:
        # Counted on requests on the wire, not on slots taken: a lane whose deliveries wait
        # for the global pool (held by some other lane) is waiting, not stalled.
        return len(lane.requests) >= self._cap and now - lane.last_progress >= self._stall_after

    def stalled(self, subscription_id: str) -> bool:
        return self._is_stalled(self._lane(subscription_id), time.monotonic())

    @staticmethod
    async def _wait_freed(lane: _Lane) -> None:
        await lane.freed.wait()

    def wake_stalled(self) -> None:
        """Defer the deliveries waiting on stalled lanes, and wake their admission."""
        now = time.monotonic()
        for lane in self._lanes.values():
            if not self._is_stalled(lane, now):
                continue
            while lane.waiters:
                waiter = lane.waiters.popleft()
                if not waiter.done():
                    lane.queued = max(0, lane.queued - 1)
                    waiter.set_result(False)
            self._freed(lane)

    async def admit(self, subscription_id: str) -> bool:
        """Reserve a place in the lane's queue; False when the lane is stalled (defer)."""
        lane = self._lane(subscription_id)
        while lane.in_flight + lane.queued >= 2 * self._cap:
            if self.stalled(subscription_id):
                return False
            await self._wait_freed(lane)
        lane.queued += 1
        return True

    def withdraw(self, subscription_id: str) -> None:
        """Give back an admitted place that will not be used (skipped without a request)."""
        lane = self._lane(subscription_id)
        lane.queued = max(0, lane.queued - 1)
        # Wake admission: a lane whose deliveries are all skipped (breaker open) must not
        # hold the consumer loop until the wait times out.
        self._freed(lane)

    @staticmethod
    def _freed(lane: _Lane) -> None:
        lane.freed.set()
        lane.freed = asyncio.Event()

    def try_acquire(self, subscription_id: str) -> bool:
        """Take a request slot at once, without a place in the queue, when one is free
        and no admitted delivery is before it; False otherwise (use :meth:`admit`)."""
        lane = self._lane(subscription_id)
        if lane.in_flight >= self._cap or lane.queued:
            return False
        if lane.in_flight == 0:
            lane.last_progress = time.monotonic()
        lane.in_flight += 1
        return True

    async def acquire(self, subscription_id: str) -> bool:
        """Turn an admitted place into a request slot; False when the lane stalled meanwhile."""
        lane = self._lane(subscription_id)
        waiters = lane.waiters
        while waiters and waiters[0].done():  # cancelled while waiting
            waiters.popleft()
        if lane.in_flight < self._cap and not waiters:
            lane.queued = max(0, lane.queued - 1)
            if lane.in_flight == 0:
                lane.last_progress = time.monotonic()
            lane.in_flight += 1
            return True
        if self._is_stalled(lane, time.monotonic()):
            lane.queued = max(0, lane.queued - 1)
            self._freed(lane)
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release(subscription_id)  # handed a slot as it was cancelled
            elif not waiter.done():
                waiter.cancel()
                lane.queued = max(0, lane.queued - 1)
                self._freed(lane)
            raise

    def release(self, subscription_id: str) -> None:
        lane = self._lane(subscription_id)
        lane.last_progress = time.monotonic()
        waiters = lane.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                # The slot passes straight on: in_flight stays, the waiter leaves the queue.
                lane.queued = max(0, lane.queued - 1)
                waiter.set_result(True)
                break
        else:
            lane.in_flight -= 1
        self._freed(lane)

    def sending(self, subscription_id: str, scope: asyncio.Timeout) -> None:
        """Note a request's timeout scope while it is being sent (see :meth:`abandon_overdue`)."""
        lane = self._lane(subscription_id)
        now = time.monotonic()
        if not lane.requests:
            lane.last_progress = now
        lane.requests[scope] = now

    def sent(self, subscription_id: str, scope: asyncio.Timeout) -> None:
        lane = self._lane(subscription_id)
        if lane.requests.pop(scope, None) is not None:
            # Ended by itself (an answer, an error, its own timeout): not hung.
            lane.gave_up = False

    def abandon_overdue(
        self, suspect: Callable[[str], bool] = lambda _: False
    ) -> list[asyncio.Timeout]:
        """Expire the requests of stalled lanes that are older than ``abandon_after``.

        A lane that gave requests up is treated as stalled until one of its requests
        ends by itself: after the first ones are given up it is seldom full again, and
        its next request to the same hung receiver must not hold its source record
        until the request timeout. ``suspect(subscription_id)`` marks further lanes to
        treat as stalled: a subscription whose breaker is open has only its half-open
        probe out. Each expired scope ends its request with a timeout at once; the
        caller records it as a failed attempt and hands the delivery to its next tier.
        """
        now = time.monotonic()
        expired: list[asyncio.Timeout] = []
        for subscription_id, lane in self._lanes.items():
            if not lane.requests:
                continue
            if not (lane.gave_up or self._is_stalled(lane, now) or suspect(subscription_id)):
                continue
            for scope, started in list(lane.requests.items()):
                if now - started >= self._abandon_after and not scope.expired():
                    del lane.requests[scope]
                    scope.reschedule(asyncio.get_running_loop().time())
                    expired.append(scope)
                    lane.gave_up = True
        return expired

    def in_flight(self, subscription_id: str) -> int:
        lane = self._lanes.get(subscription_id)
        return 0 if lane is None else lane.in_flight
