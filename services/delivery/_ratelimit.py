"""Rate limits: a token bucket per subscription, each replica holding its share of it.

A subscription's ``rate_limit`` (``per_second``, ``burst``) is split between the delivery
replicas by what each reads: a replica's share is the partitions it owns over every
source it consumes (``workflow-events`` and each retry tier), over all of their
partitions (:class:`Shares`). Every partition is owned by one replica at a time, so the
shares add up to at most 1 and the replicas together never send more than the limit;
the shares move with every rebalance, a replica that joins or leaves included. Runs are
spread over ``workflow-events`` partitions by their key, so a replica's share of a
subscription's traffic is about its share of the partitions, and each drains what it
reads at its share of the limit. (Dividing by the number of live replicas would need
them counted: the group coordinator tells only its leader; and a replica that owns no
partition would still take a share.)

Each bucket is a GCRA: one request every ``1 / (per_second × share)`` seconds, a burst
of ``max(1, burst × share)`` (``burst`` 0: ``per_second`` rounded up). A delivery takes
a token now, or waits in memory in its subscription's queue (its record unsettled) when
its turn comes within ``wait_at_most``; one that would wait longer is held back
(:meth:`RateLimits.later` says until when): in the hold store when its replica owns its
source partition, else on a retry tier. While deliveries are held back, the ones that
come after queue behind them, so the held ones keep their turn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from shared.entities import RateLimit

Clock = Callable[[], float]


class Shares:
    """This replica's share of the delivery sources' partitions (0 until it owns any)."""

    def __init__(self, totals: dict[str, int] | None = None) -> None:
        self._totals: dict[str, int] = dict(totals or {})
        self._owned: dict[str, int] = {}
        self.fraction = 0.0

    def set_total(self, source: str, partitions: int) -> None:
        self._totals[source] = partitions
        self._recompute()

    def owned(self, source: str, partitions: int) -> None:
        """``source`` is now assigned ``partitions`` of its partitions here."""
        self._owned[source] = partitions
        self._recompute()

    def _recompute(self) -> None:
        total = sum(self._totals.values())
        owned = sum(min(n, self._totals.get(s, n)) for s, n in self._owned.items())
        self.fraction = min(1.0, owned / total) if total else 0.0


class _Bucket:
    __slots__ = ("behind", "burst", "fraction", "interval", "per_second", "tat", "tolerance")

    def __init__(self, limit: RateLimit, fraction: float, now: float) -> None:
        self.per_second = limit.per_second
        self.burst = limit.burst
        self.fraction = -1.0
        self.interval = math.inf
        self.tolerance = 0.0
        self.tat = now  # the theoretical arrival time of the next request
        self.behind = 0.0  # until when deliveries are held back (monotonic)
        self.resize(fraction, now)

    def resize(self, fraction: float, now: float) -> None:
        """Take ``fraction`` of the limit from now on (a rebalance moved the shares)."""
        if fraction == self.fraction:
            return
        self.fraction = fraction
        rate = self.per_second * fraction
        if rate <= 0:
            self.interval, self.tolerance = math.inf, 0.0
            return
        burst = self.burst if self.burst > 0 else math.ceil(self.per_second)
        capacity = max(1.0, burst * fraction)
        self.interval = 1.0 / rate
        self.tolerance = (capacity - 1.0) * self.interval
        # Slots promised under the old share stay promised; none beyond a burst's worth.
        self.tat = min(self.tat, now + capacity * self.interval)


class RateLimits:
    """The buckets of this replica, by subscription id.

    :meth:`take` only takes a token that is there now: a delivery that must wait is
    queued by the caller, which asks again when :meth:`take` says the next one comes,
    one at a time; so a process that falls behind (a busy event loop) sends late rather
    than in a burst.
    """

    def __init__(
        self,
        shares: Shares,
        *,
        wait_at_most: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._shares = shares
        self.wait_at_most = wait_at_most
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, subscription_id: str, limit: RateLimit, now: float) -> _Bucket:
        bucket = self._buckets.get(subscription_id)
        if bucket is None or (bucket.per_second, bucket.burst) != (limit.per_second, limit.burst):
            bucket = self._buckets[subscription_id] = _Bucket(limit, self._shares.fraction, now)
        else:
            bucket.resize(self._shares.fraction, now)
        return bucket

    def take(
        self, subscription_id: str, limit: RateLimit, *, queued: int = 0, held: bool = False
    ) -> float | None:
        """0.0 when a token was taken now; else the seconds until the next one comes, when
        that (with ``queued`` deliveries already waiting before this one) is within
        ``wait_at_most``; None when it must be held back instead, or must queue behind
        deliveries held back before it (``held``: it is one of those, back for its turn)."""
        now = self._clock()
        bucket = self._bucket(subscription_id, limit, now)
        if math.isinf(bucket.interval) or (not held and bucket.behind > now):
            return None  # no share here (yet), or deliveries held back are before it
        at = max(now, bucket.tat - bucket.tolerance)
        if at <= now and not queued:
            bucket.tat = max(bucket.tat, now) + bucket.interval
            return 0.0
        wait = at - now + queued * bucket.interval
        return wait if wait <= self.wait_at_most else None

    def later(self, subscription_id: str, limit: RateLimit, *, queued: int = 0) -> float:
        """Seconds until a delivery held back now should come back: one slot after the
        ones waiting or held back before it (it takes its token when back)."""
        now = self._clock()
        bucket = self._bucket(subscription_id, limit, now)
        if math.isinf(bucket.interval):
            return self.wait_at_most  # no share here (yet): look again soon
        start = max(bucket.behind, bucket.tat - bucket.tolerance + queued * bucket.interval, now)
        bucket.behind = start + bucket.interval
        return bucket.behind - now

    def forget(self, subscription_id: str) -> None:
        self._buckets.pop(subscription_id, None)
