"""The public app's paths against the real broker: other methods and paths are answered
with problem documents (405, 404), a bug in the pipeline is a logged 500, a vanished
client is logged, and a burst for one webhook is acknowledged in full."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from services.ingress import _handler, create_ingress_app
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic
from tests.ingress.helpers import github_headers, ingress_client

pytestmark = pytest.mark.kafka

GH = "gh-secret-fast"


async def _github_hook(settings: Settings, topics: Topics, hook_id: str = "gh") -> None:
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook(hook_id, provider="github", secrets=[GH]),
    )


async def test_other_methods_and_paths_are_answered_with_problems(
    settings: Settings, topics: Topics
) -> None:
    await _github_hook(settings, topics)
    async with ingress_client(settings) as http:
        answers = [
            (405, await http.get("/webhooks/gh/github")),
            (405, await http.put("/webhooks/gh")),
            (404, await http.post("/webhooks/gh/bitbucket", content=b"{}")),
            (404, await http.post("/webhooks/gh/github/x", content=b"{}")),
        ]
    for status, answer in answers:
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == status
    assert answers[0][1].headers["allow"] == "POST"


async def test_a_bug_in_the_pipeline_is_a_logged_500(
    settings: Settings,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _github_hook(settings, topics)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(_handler, "parse_body", broken)
    caplog.set_level(logging.INFO, logger="hookline.ingress")
    body = b'{"zen": "x"}'
    headers = {**github_headers(GH, body, "push", "d-bug"), "Content-Type": "application/json"}
    async with ingress_client(settings) as http:
        response = await http.post("/webhooks/gh/github", content=body, headers=headers)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "https://hookline.dev/problems/internal",
        "title": "Internal error",
        "status": 500,
        "detail": "the request could not be handled",
    }
    failed = [r for r in caplog.records if r.getMessage() == "webhook request failed"]
    assert failed and failed[0].exc_info is not None
    lines = [r for r in caplog.records if r.getMessage() == "webhook request"]
    assert [getattr(r, "status", None) for r in lines] == [500]


async def test_a_client_gone_before_its_body_gets_no_answer_and_one_log_line(
    settings: Settings, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    await _github_hook(settings, topics)
    caplog.set_level(logging.INFO, logger="hookline.ingress")
    app = create_ingress_app(settings)
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b"{", "more_body": True}]
    messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/gh/github",
        "headers": [(b"content-type", b"application/json"), (b"x-github-event", b"push")],
        "client": ("127.0.0.1", 4000),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    assert sent == []
    lines = [r for r in caplog.records if r.getMessage() == "webhook request"]
    assert len(lines) == 1 and "disconnected" in getattr(lines[0], "reason", "")


async def test_a_burst_for_one_webhook_is_acknowledged_in_full(
    settings: Settings, topics: Topics, fixtures_dir: Path
) -> None:
    # Hundreds of webhook-sized records for one key (one partition) at once: more
    # than one producer batch used to hold, which made every send wait in a herd.
    await _github_hook(settings, topics)
    body = (fixtures_dir / "github" / "push" / "payload.json").read_bytes()
    prefix = uuid.uuid4().hex[:8]
    count = 300
    async with ingress_client(settings) as http:

        async def post(n: int) -> int:
            headers = github_headers(GH, body, "push", f"{prefix}-{n}")
            headers["Content-Type"] = "application/json"
            response = await http.post("/webhooks/gh/github", content=body, headers=headers)
            return response.status_code

        statuses = await asyncio.wait_for(asyncio.gather(*(post(n) for n in range(count))), 60)
    assert statuses == [202] * count
    records = await read_topic(
        settings.kafka_bootstrap_servers, topics.inbound, min_count=count, timeout=30
    )
    assert len(records) == count
