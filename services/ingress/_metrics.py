"""The ingress' Prometheus metrics (registered once per process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "hookline_ingress_requests",
    "Webhook requests, by provider route and outcome.",
    ["provider", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "hookline_ingress_request_seconds",
    "Time from the request's arrival to the response, by provider route.",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUBLISH_SECONDS = Histogram(
    "hookline_ingress_publish_seconds",
    "Time from the write to Kafka's acknowledgement (acks=all), by provider route.",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# The public port's connections (services/ingress/_edge.py), per process.
OPEN_CONNECTIONS = Gauge(
    "hookline_ingress_open_connections",
    "Connections open on the public port (TLS handshakes done), including refused ones.",
)
REQUEST_TIMEOUTS = Counter(
    "hookline_ingress_request_timeouts",
    "Requests whose headers or body did not arrive in time, by phase: answered 408 and "
    "closed, or closed (an idle new connection, a body still coming after the answer).",
    ["phase"],
)
CONNECTIONS_REFUSED = Counter(
    "hookline_ingress_connections_refused",
    "Connections answered 503 and closed because HOOKLINE_MAX_CONNECTIONS were open.",
)

# Label lookups hash and validate their values on every call; the children are cached.
_requests: dict[tuple[str, str], Any] = {}
_request_seconds: dict[str, Any] = {}
_publish_seconds: dict[str, Any] = {}


def count(provider: str, outcome: str, seconds: float) -> None:
    """One answered request: its outcome and how long it took."""
    counter = _requests.get((provider, outcome))
    if counter is None:
        counter = _requests[provider, outcome] = REQUESTS.labels(provider, outcome)
    counter.inc()
    histogram = _request_seconds.get(provider)
    if histogram is None:
        histogram = _request_seconds[provider] = REQUEST_SECONDS.labels(provider)
    histogram.observe(seconds)


def observe_publish(provider: str, seconds: float) -> None:
    histogram = _publish_seconds.get(provider)
    if histogram is None:
        histogram = _publish_seconds[provider] = PUBLISH_SECONDS.labels(provider)
    histogram.observe(seconds)
