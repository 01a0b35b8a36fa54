"""The ingress' Prometheus metrics (registered once per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
