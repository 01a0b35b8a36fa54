"""The rate limit's arithmetic: shares of the partitions, and the bucket (no broker)."""

from __future__ import annotations

from services.delivery._ratelimit import RateLimits, Shares
from shared.entities import RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_replica_s_share_is_what_it_owns_of_every_source_s_partitions() -> None:
    shares = Shares({"events": 6, "retry.2": 6})
    assert shares.fraction == 0.0  # nothing owned yet: nothing may be sent
    shares.owned("events", 3)
    shares.owned("retry.2", 3)
    assert shares.fraction == 0.5
    other = Shares({"events": 6, "retry.2": 6})
    other.owned("events", 3)
    other.owned("retry.2", 3)
    assert shares.fraction + other.fraction == 1.0
    shares.owned("events", 0)  # revoked before the next assignment: the share drops at once
    assert shares.fraction == 0.25


def test_the_bucket_gives_the_share_of_the_rate_and_a_burst_of_at_least_one() -> None:
    shares = Shares({"events": 2})
    shares.owned("events", 1)  # half of 10/s: one every 0.2 s, a burst of one
    clock = Clock()
    limits = RateLimits(shares, wait_at_most=1.0, clock=clock)
    limit = RateLimit(per_second=10, burst=1)
    assert limits.take("s", limit) == 0.0
    wait = limits.take("s", limit)
    assert wait is not None and abs(wait - 0.2) < 1e-9  # not taken: asked again then
    assert limits.take("s", limit, queued=3) is not None  # the fourth in line: 0.8 s
    assert limits.take("s", limit, queued=5) is None  # beyond a second: held back
    clock.now += 0.2
    assert limits.take("s", limit) == 0.0
    # Over ten seconds, at most the share of the rate (and the burst).
    taken = 0
    for _ in range(1000):
        clock.now += 0.01
        taken += limits.take("s", limit) == 0.0
    assert taken <= 10 * 5 + 1


def test_held_back_deliveries_keep_their_turn_and_come_back_a_slot_apart() -> None:
    shares = Shares({"events": 1})
    shares.owned("events", 1)
    clock = Clock()
    limits = RateLimits(shares, wait_at_most=0.5, clock=clock)
    limit = RateLimit(per_second=4, burst=1)
    assert limits.take("s", limit) == 0.0
    first, second = limits.later("s", limit), limits.later("s", limit)
    assert abs((second - first) - 0.25) < 1e-9
    # A newcomer queues behind them; one of them back for its turn takes it.
    assert limits.take("s", limit) is None
    clock.now += first
    assert limits.take("s", limit, held=True) == 0.0


def test_without_a_share_nothing_goes_and_held_ones_look_again_soon() -> None:
    limits = RateLimits(Shares({"events": 3}), wait_at_most=1.0, clock=Clock())
    limit = RateLimit(per_second=100)
    assert limits.take("s", limit) is None
    assert limits.later("s", limit) == 1.0
