"""Isolation between subscriptions: per-subscription lanes, circuit breakers, failing streaks.

None of these touch the network or Kafka; the attempt step consults them.
Time comes from ``time.monotonic`` unless a test passes its own clock.
"""

from __future__ import annotations

import asyncio
import time
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

    def record_success(self, subscription_id: str) -> None:
        self._states.pop(subscription_id, None)

    def record_failure(self, subscription_id: str) -> None:
        state = self._states.setdefault(subscription_id, _BreakerState())
        state.failures += 1
        state.probe_started = None
        if state.failures >= self._threshold:
            state.opened_at = self._clock()

    def forget(self, subscription_id: str) -> None:
        self._states.pop(subscription_id, None)


class FailingStreaks:
    """Since when each subscription has failed without a single success (wall-clock seconds).

    A retried delivery carries its first attempt's time, so a streak survives a
    restart as soon as the first retry of it comes due.
    """

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def record_success(self, subscription_id: str) -> None:
        self._since.pop(subscription_id, None)

    def record_failure(self, subscription_id: str, since: float) -> float:
        """Note a failure whose streak began no later than ``since``; return the streak's start."""
        current = self._since.get(subscription_id)
        start = since if current is None else min(current, since)
        self._since[subscription_id] = start
        return start

    def forget(self, subscription_id: str) -> None:
        self._since.pop(subscription_id, None)


class Lanes:
    """A cap on requests in flight per subscription, with a bounded wait for a slot.

    A delivery that cannot start within ``wait`` seconds is told so (``acquire``
    returns False) and is deferred to a retry tier by the caller: a stuck receiver
    then holds at most its cap of requests, never a queue of everyone's records.
    """

    def __init__(self, per_subscription: int, wait: float) -> None:
        self._cap = per_subscription
        self._wait = wait
        self._lanes: dict[str, asyncio.Semaphore] = {}

    def _lane(self, subscription_id: str) -> asyncio.Semaphore:
        lane = self._lanes.get(subscription_id)
        if lane is None:
            lane = self._lanes[subscription_id] = asyncio.Semaphore(self._cap)
        return lane

    async def acquire(self, subscription_id: str) -> bool:
        lane = self._lane(subscription_id)
        if not lane.locked():
            await lane.acquire()
            return True
        try:
            async with asyncio.timeout(self._wait):
                await lane.acquire()
        except TimeoutError:
            return False
        return True

    def release(self, subscription_id: str) -> None:
        self._lane(subscription_id).release()

    def in_flight(self, subscription_id: str) -> int:
        lane = self._lanes.get(subscription_id)
        return 0 if lane is None else self._cap - lane._value
