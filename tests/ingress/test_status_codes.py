"""Every status code of the design's ingress section, one row each, against the real app.

A row's headers are made when its request is sent, not when the module is imported:
signatures carry a timestamp, and a row signed at import would be refused as stale
once the suite took longer than the tolerance to reach it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.entities import RateLimit
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from tests.ingress.helpers import (
    github_headers,
    ingress_client,
    ingress_clients,
    slack_headers,
    standard_headers,
)

pytestmark = pytest.mark.kafka

GH = "gh-secret-0123"
GEN = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GL = "gl-token-0123"
SL = "slack-secret-0123"
CAP = 4096
PUSH = json.dumps({"ref": "refs/heads/main"}).encode()
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def too_long_stream() -> AsyncIterator[bytes]:
    for _ in range(10):
        yield b"x" * 1024


@dataclass
class Row:
    what: str
    path: str
    status: int
    # Called when the request is sent (signatures are timestamped).
    headers: Callable[[], dict[str, str]] = dict
    body: Any = b"{}"
    app: str = "main"
    expect: dict[str, Any] | None = None
    text: str | None = None
    retry_after: bool = False


def gh(body: bytes, event: str = "push", delivery: str = "d-1", **extra: str) -> dict[str, str]:
    return {**github_headers(GH, body, event, delivery), **JSON, **extra}


ROWS = [
    Row(
        "202 generic, Standard Webhooks signature",
        "/webhooks/gen",
        202,
        lambda: {**standard_headers(GEN, b'{"type": "order.paid"}', "msg_1"), **JSON},
        b'{"type": "order.paid"}',
        expect={"id": "msg_1"},
    ),
    Row(
        "202 generic, unsigned where allowed, raw text",
        "/webhooks/gen-open",
        202,
        lambda: {"Content-Type": "text/plain"},
        b"hello",
    ),
    Row(
        "202 github push",
        "/webhooks/gh/github",
        202,
        lambda: gh(PUSH, delivery="d-push"),
        PUSH,
        expect={"id": "d-push"},
    ),
    Row(
        "200 github ping",
        "/webhooks/gh/github",
        200,
        lambda: gh(b'{"zen": "x"}', "ping", "d-ping"),
        b'{"zen": "x"}',
        expect={"id": "d-ping"},
    ),
    Row(
        "200 slack url_verification echoes the challenge",
        "/webhooks/sl/slack",
        200,
        lambda: {**slack_headers(SL, b'{"type": "url_verification", "challenge": "abc"}'), **JSON},
        b'{"type": "url_verification", "challenge": "abc"}',
        expect={"challenge": "abc"},
    ),
    Row(
        "200 slack slash command answers the acknowledgement text",
        "/webhooks/sl/slack",
        200,
        lambda: {**slack_headers(SL, b"command=%2Fdeploy&text=now"), **FORM},
        b"command=%2Fdeploy&text=now",
        text="deploying…",
    ),
    Row("400 github body is not JSON", "/webhooks/gh/github", 400, lambda: gh(b"{nope"), b"{nope"),
    Row(
        "400 github without X-GitHub-Event",
        "/webhooks/gh/github",
        400,
        lambda: {k: v for k, v in gh(PUSH).items() if k != "X-GitHub-Event"},
        PUSH,
    ),
    Row(
        "401 github wrong signature",
        "/webhooks/gh/github",
        401,
        lambda: gh(PUSH, **{"X-Hub-Signature-256": "sha256=" + "0" * 64}),
        PUSH,
    ),
    Row(
        "401 github unsigned",
        "/webhooks/gh/github",
        401,
        lambda: {**JSON, "X-GitHub-Event": "push"},
        PUSH,
    ),
    Row(
        "401 generic stale timestamp",
        "/webhooks/gen",
        401,
        lambda: {**standard_headers(GEN, b"{}", "msg_2", int(time.time()) - 400), **JSON},
    ),
    Row("401 generic without secret nor allow_unsigned", "/webhooks/gen-closed", 401, lambda: JSON),
    Row(
        "401 gitlab wrong token",
        "/webhooks/gl/gitlab",
        401,
        lambda: {**JSON, "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"},
    ),
    Row(
        "401 slack signature from another secret",
        "/webhooks/sl/slack",
        401,
        lambda: {**slack_headers("other", b'{"type": "event_callback"}'), **JSON},
        b'{"type": "event_callback"}',
    ),
    Row(
        "403 source outside the allowlist", "/webhooks/gh-cidr/github", 403, lambda: gh(PUSH), PUSH
    ),
    Row("404 unknown webhook", "/webhooks/nobody/github", 404, lambda: gh(PUSH), PUSH),
    Row("404 disabled webhook", "/webhooks/gh-off/github", 404, lambda: gh(PUSH), PUSH),
    Row("404 webhook on another provider's route", "/webhooks/gh/slack", 404, lambda: JSON),
    Row("404 provider webhook on the generic route", "/webhooks/gh", 404, lambda: JSON),
    Row(
        "413 declared length over the cap",
        "/webhooks/gh/github",
        413,
        lambda: gh(b"x" * (CAP + 1)),
        b"x" * (CAP + 1),
    ),
    Row("413 chunked body over the cap", "/webhooks/gen-open", 413, lambda: JSON, "stream"),
    Row(
        "415 github text/plain",
        "/webhooks/gh/github",
        415,
        lambda: gh(PUSH, **{"Content-Type": "text/plain"}),
        PUSH,
    ),
    Row(
        "415 gitlab form",
        "/webhooks/gl/gitlab",
        415,
        lambda: {**FORM, "X-Gitlab-Token": GL},
        b"a=1",
    ),
    Row(
        "202 rate-limited webhook, first request",
        "/webhooks/gh-slow/github",
        202,
        lambda: gh(PUSH, delivery="d-rl-1"),
        PUSH,
    ),
    Row(
        "429 rate-limited webhook, second request",
        "/webhooks/gh-slow/github",
        429,
        lambda: gh(PUSH, delivery="d-rl-2"),
        PUSH,
        retry_after=True,
    ),
    Row(
        "503 acknowledgement missed the deadline",
        "/webhooks/gh/github",
        503,
        lambda: gh(PUSH, delivery="d-late"),
        PUSH,
        app="late",
        retry_after=True,
    ),
]


async def send(http: httpx.AsyncClient, row: Row) -> httpx.Response:
    content = too_long_stream() if row.body == "stream" else row.body
    return await http.post(row.path, content=content, headers=row.headers())


async def test_every_status_code_of_the_design(
    settings: Settings, topics: Topics, caplog: pytest.LogCaptureFixture
):
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh", provider="github", secrets=[GH]),
        webhook(
            "gh-cidr",
            provider="github",
            secrets=[GH],
            allowed_cidrs=["192.0.2.0/24", "2001:db8::/32"],
        ),
        webhook("gh-off", provider="github", secrets=[GH], enabled=False),
        webhook(
            "gh-slow",
            provider="github",
            secrets=[GH],
            rate_limit=RateLimit(per_second=0.01, burst=1),
        ),
        webhook("gen", provider="generic", secrets=[GEN]),
        webhook("gen-open", provider="generic", allow_unsigned=True),
        webhook("gen-closed", provider="generic"),
        webhook("gl", provider="gitlab", secrets=[GL]),
        webhook("sl", provider="slack", secrets=[SL], ack_text="deploying…"),
    )
    main = settings.model_copy(update={"max_body_bytes": CAP})
    late = settings.model_copy(update={"publish_timeout": 0.0001})
    statuses = {row.status for row in ROWS}
    assert statuses >= {200, 202, 400, 401, 403, 404, 413, 415, 429, 503}

    caplog.set_level(logging.INFO, logger="hookline.ingress")
    failures = []
    async with (
        ingress_clients(main) as (main_http, internal_http),
        ingress_client(late) as late_http,
    ):
        for row in ROWS:
            response = await send(late_http if row.app == "late" else main_http, row)
            problems = []
            if response.status_code != row.status:
                problems.append(f"status {response.status_code}: {response.text[:200]}")
            if row.expect is not None and response.json() != row.expect:
                problems.append(f"body {response.text[:200]}")
            if row.text is not None and response.text != row.text:
                problems.append(f"text {response.text!r}")
            if row.retry_after and not response.headers.get("retry-after", "").isdigit():
                problems.append("no Retry-After")
            if problems:
                failures.append((row.what, problems))
        metrics = (await internal_http.get("/metrics")).text

    assert not failures, failures

    lines = [r for r in caplog.records if r.getMessage() == "webhook request"]
    assert len(lines) == len(ROWS), "one log line per request"
    logged = " ".join(str(r.__dict__) for r in lines)
    for secret in (GH, GEN, GL, SL):
        assert secret not in logged
    assert {getattr(r, "status", None) for r in lines} == statuses
    assert 'hookline_ingress_requests_total{outcome="accepted",provider="github"}' in metrics
    assert 'hookline_ingress_requests_total{outcome="unauthorized",provider="gitlab"}' in metrics
    assert "hookline_ingress_publish_seconds_bucket" in metrics


async def test_health_and_metrics_are_internal_and_404_on_the_public_app(
    settings: Settings, topics: Topics
):
    async with ingress_clients(settings) as (public, internal):
        for path in ("/healthz", "/readyz", "/metrics"):
            answer = await public.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"] == "application/problem+json"
        assert (await internal.get("/healthz")).status_code == 200
        ready = await internal.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"kafka": True, "config": True, "producer": True}
        assert "hookline_ingress_requests_total" in (await internal.get("/metrics")).text
