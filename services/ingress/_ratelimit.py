"""A token bucket per webhook: ``per_second`` refill, ``burst`` capacity."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from shared.entities import RateLimit


class TokenBucket:
    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def capacity_of(limit: RateLimit) -> float:
    return float(limit.burst) if limit.burst > 0 else float(max(1, math.ceil(limit.per_second)))


class RateLimiter:
    """Buckets keyed by webhook id; a changed limit starts a fresh bucket.

    Lives in one process: with N ingress replicas the effective limit is N times
    the configured one (documented in docs/ingress.md).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, limit: RateLimit | None) -> float:
        """0.0 when the request may go on, else how long to wait (for ``Retry-After``)."""
        if limit is None:
            self._buckets.pop(key, None)
            return 0.0
        now = self._clock()
        capacity = capacity_of(limit)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != limit.per_second or bucket.capacity != capacity:
            bucket = TokenBucket(limit.per_second, capacity, now)
            self._buckets[key] = bucket
        return bucket.take(now)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)
