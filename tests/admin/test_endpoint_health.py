"""Per-subscription health from the attempts: rates, latency, streaks, the inferred breaker,
and the Prometheus series behind their setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from services.admin.endpoint_health import HealthMetrics
from shared.settings import Settings
from shared.topics import Topics
from testkit.kafka import wait_until
from testkit.opsdata import attempt, write

from .conftest import running_admin

pytestmark = pytest.mark.kafka


async def test_health_over_three_windows_and_as_series(settings: Settings, topics: Topics):
    settings = settings.model_copy(update={"subscription_metrics": True, "breaker_cooldown": 60.0})
    bootstrap = settings.kafka_bootstrap_servers
    now = datetime.now(UTC)
    records = [
        # Two hours ago: in the day only.
        attempt("d-old", 1, "succeeded", now - timedelta(hours=2), subscription_id="sub-h"),
        # Half an hour ago: in the hour and the day.
        *(
            attempt(
                f"d-{i}",
                1,
                "succeeded",
                now - timedelta(minutes=30, seconds=i),
                subscription_id="sub-h",
                latency_ms=float(10 * (i + 1)),
            )
            for i in range(4)
        ),
        # Just now: five failures in a row, the breaker's threshold.
        *(
            attempt(
                f"f-{i}",
                1,
                "failed",
                now - timedelta(seconds=5 - i),
                subscription_id="sub-h",
                latency_ms=500.0,
                status_code=503,
            )
            for i in range(5)
        ),
        # Hand-ons past an open breaker made no request: not counted.
        attempt(
            "f-x",
            9,
            "exhausted",
            now,
            subscription_id="sub-h",
            error="circuit_open",
            status_code=None,
            latency_ms=None,
        ),
    ]
    async with running_admin(settings, topics) as admin:
        made = await admin.client.post(
            "/v1/subscriptions", json={"id": "sub-h", "url": "https://r.example/"}
        )
        assert made.status_code == 201, made.text
        await write(bootstrap, topics.delivery_attempts, records)

        async def counted() -> bool:
            answer = await admin.client.get("/v1/deliveries", params={"subscription_id": "sub-h"})
            return answer.status_code == 200 and len(answer.json()["items"]) == 11

        await wait_until(counted, timeout=15, message="the attempts in the view")
        answer = await admin.client.get("/v1/subscriptions/sub-h/health")
        assert answer.status_code == 200, answer.text
        health = answer.json()
        assert health["consecutive_failures"] == 5 and health["breaker"] == "open"
        assert health["last_error"] == "HTTP 503"
        windows = {w["window"]: w for w in health["windows"]}
        assert (windows["5m"]["attempts"], windows["5m"]["succeeded"]) == (5, 0)
        assert windows["5m"]["success_rate"] == 0.0 and windows["5m"]["latency_p50_ms"] == 500.0
        assert (windows["1h"]["attempts"], windows["1h"]["succeeded"]) == (9, 4)
        assert windows["1h"]["latency_p50_ms"] == 500.0 and windows["1h"]["latency_p99_ms"] == 500.0
        assert (windows["1d"]["attempts"], windows["1d"]["succeeded"]) == (10, 5)
        missing = await admin.client.get("/v1/subscriptions/nope/health")
        assert missing.status_code == 404

        await HealthMetrics(admin.ctx).refresh()
        sample = REGISTRY.get_sample_value
        assert sample("hookline_subscription_consecutive_failures", {"subscription": "sub-h"}) == 5
        assert sample("hookline_subscription_breaker_open", {"subscription": "sub-h"}) == 1
        ratio = sample(
            "hookline_subscription_success_ratio", {"subscription": "sub-h", "window": "1d"}
        )
        assert ratio == 0.5
