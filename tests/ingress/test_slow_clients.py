"""The real ingress, on its real server, against clients that trickle their bodies: each
is answered 408 and closed within the body deadline, while a normal client's signed
posts keep getting 202."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from prometheus_client import REGISTRY

from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from tests.ingress.helpers import github_headers
from tests.ingress.rawhttp import Connection, request, served_ingress

pytestmark = pytest.mark.kafka

SECRET = "slow-clients-secret"
SLOW = 60
BODY_TIMEOUT = 2.0
MARGIN = 3.0  # a shared 2-core machine: the deadline is what is asserted, not speed


def _signed(body: bytes) -> dict[str, str]:
    return {
        **github_headers(SECRET, body, "push", str(uuid.uuid4())),
        "Content-Type": "application/json",
    }


async def _slow_client(port: int) -> tuple[int, float, bool]:
    """Headers of a webhook post promising 100000 bytes, then a byte every 0.5 s."""
    conn = await Connection.open(port)
    try:
        body = b"{"
        await conn.send(request("/webhooks/gh/github", body, _signed(body), content_length=100_000))
        sent = time.monotonic()
        while await conn.trickle(b" "):
            if conn.closed.is_set() or time.monotonic() - sent > BODY_TIMEOUT + 2 * MARGIN:
                break
            await asyncio.sleep(0.5)
        answer = await conn.answer(timeout=MARGIN)
        waited = time.monotonic() - sent
        return answer.status, waited, await conn.closed_by_server(MARGIN)
    finally:
        await conn.close()


def _counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_trickled_bodies_get_408_in_time_while_signed_posts_get_202(
    settings: Settings, topics: Topics
) -> None:
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh", provider="github", secrets=[SECRET]),
    )
    timeouts_before = _counted("hookline_ingress_request_timeouts_total", phase="body")
    outcomes_before = _counted(
        "hookline_ingress_requests_total", provider="github", outcome="request_timeout"
    )
    async with served_ingress(settings, body_timeout=BODY_TIMEOUT) as served:
        slow = [asyncio.create_task(_slow_client(served.port)) for _ in range(SLOW)]
        latencies: list[float] = []
        statuses: list[int] = []
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{served.port}", timeout=30
        ) as http:
            # Posting all the while the slow ones hold their connections, and a while after.
            while not all(task.done() for task in slow) or len(statuses) < 10:
                body = b'{"ref": "refs/heads/main", "n": %d}' % len(statuses)
                started = time.monotonic()
                answer = await http.post("/webhooks/gh/github", content=body, headers=_signed(body))
                latencies.append(time.monotonic() - started)
                statuses.append(answer.status_code)
                await asyncio.sleep(0.05)
        results = [await task for task in slow]

    assert set(statuses) == {202}, statuses
    # Sane, not fast: nothing waited behind the slow connections.
    assert max(latencies) < BODY_TIMEOUT, max(latencies)
    for status, waited, closed in results:
        assert status == 408
        assert waited <= BODY_TIMEOUT + MARGIN, waited
        assert closed
    assert _counted("hookline_ingress_request_timeouts_total", phase="body") == (
        timeouts_before + SLOW
    )
    # The pipeline counts and logs each one as its request's outcome too.
    assert _counted(
        "hookline_ingress_requests_total", provider="github", outcome="request_timeout"
    ) == (outcomes_before + SLOW)
