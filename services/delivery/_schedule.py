"""When the next attempt is due: the retry schedule, its jitter, and ``Retry-After``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# Retry-After may lengthen a gap, never shorten it; and it may not stretch a gap
# past this multiple of the schedule's own gap (nor past a day), so a receiver
# cannot park a delivery at the head of a retry tier for longer than the tier allows.
RETRY_AFTER_MAX_FACTOR = 4.0
RETRY_AFTER_MIN_CEILING = 60.0
DAY = 24 * 3600.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RetryPolicy:
    """The gaps between attempts (the first attempt is immediate), with jitter."""

    def __init__(
        self, schedule: Sequence[float], *, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self.schedule = tuple(schedule)
        self.jitter = jitter
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def gap(self, attempt: int) -> float:
        """The schedule's gap after ``attempt`` failed (attempt 1 → the first gap)."""
        index = min(max(attempt - 1, 0), len(self.schedule) - 1)
        return self.schedule[index] if self.schedule else 0.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds until the attempt after ``attempt``: jittered gap, stretched by Retry-After."""
        gap = self.gap(attempt)
        delay = gap * (1 + self._rng.uniform(-self.jitter, self.jitter)) if self.jitter else gap
        if retry_after is not None and retry_after > delay:
            ceiling = min(max(gap * RETRY_AFTER_MAX_FACTOR, RETRY_AFTER_MIN_CEILING), DAY)
            delay = min(retry_after, max(ceiling, delay))
        return max(delay, 0.0)

    def next_due(self, attempt: int, now: datetime, retry_after: float | None = None) -> datetime:
        return now + timedelta(seconds=self.delay(attempt, retry_after))

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` was the last one the schedule allows."""
        return attempt >= self.max_attempts
