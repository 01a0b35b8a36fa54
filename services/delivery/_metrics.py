"""Prometheus metrics of the delivery service (registered once per process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from services.delivery._isolation import CircuitBreakers

ATTEMPTS = Counter("hookline_delivery_attempts_total", "Delivery attempts by outcome", ["outcome"])
DEFERRED = Counter(
    "hookline_delivery_deferred_total",
    "Deliveries handed to a retry tier because their subscription's lane was full",
)
SKIPPED_BY_BREAKER = Counter(
    "hookline_delivery_skipped_by_breaker_total",
    "Deliveries moved to their next tier without a request because their breaker was open",
)
LATENCY = Histogram(
    "hookline_delivery_latency_seconds",
    "Time from request start to response (or error)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RETRIES = Counter(
    "hookline_delivery_retries_total",
    "Deliveries handed to a retry tier, by tier (the number of the attempt they wait for)",
    ["tier"],
)
BREAKERS = Gauge(
    "hookline_delivery_breakers",
    "Subscriptions whose circuit breaker is open or half-open (probing), by state",
    ["state"],
)
UNSETTLED = Gauge(
    "hookline_delivery_unsettled_records", "Records taken but not yet settled", ["consumer"]
)
HELD = Counter(
    "hookline_delivery_held_total",
    "Deliveries written to the hold store, by why they wait (paused, ordered, rate_limited)",
    ["reason"],
)
RATE_LIMITED = Counter(
    "hookline_delivery_rate_limited_total",
    "Deliveries that waited for their subscription's rate limit (in memory or held back)",
)

# Label lookups hash and validate their values on every call; the children are cached.
_retries: dict[int, Any] = {}


def count_retry(tier: int) -> None:
    child = _retries.get(tier)
    if child is None:
        child = _retries[tier] = RETRIES.labels(str(tier))
    child.inc()


def watch_breakers(breakers: CircuitBreakers) -> None:
    """The breaker gauges read ``breakers`` when scraped (the latest service's, in a
    process that builds several), so nothing is counted on the delivery path."""

    def reader(state: str) -> Callable[[], float]:
        return lambda: breakers.states().get(state, 0)

    for state in ("open", "half_open"):
        BREAKERS.labels(state).set_function(reader(state))
