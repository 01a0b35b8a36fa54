"""The retry schedule: gaps, jitter within bounds, Retry-After honoured within bounds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from services.delivery import RetryPolicy, parse_retry_after


def test_gaps_follow_the_schedule_and_the_last_attempt_is_exhausted() -> None:
    policy = RetryPolicy((5, 30, 120), jitter=0)
    assert [policy.delay(a) for a in (1, 2, 3)] == [5, 30, 120]
    assert policy.max_attempts == 4
    assert not policy.exhausted(3) and policy.exhausted(4)


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    policy = RetryPolicy((100,), jitter=0.2, rng=random.Random(1))
    delays = [policy.delay(1) for _ in range(200)]
    assert all(80 <= d <= 120 for d in delays)
    assert max(delays) - min(delays) > 20


def test_retry_after_lengthens_a_gap_but_is_capped() -> None:
    policy = RetryPolicy((5, 600), jitter=0)
    assert policy.delay(1, retry_after=2) == 5  # never shortens
    assert policy.delay(1, retry_after=30) == 30  # lengthens
    assert policy.delay(1, retry_after=10_000) == 60  # capped: max(4 x gap, 60 s)
    assert policy.delay(2, retry_after=10_000) == 2400


def test_retry_after_parses_seconds_and_http_dates_and_ignores_garbage() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
