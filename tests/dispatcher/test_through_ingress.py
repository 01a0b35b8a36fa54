"""The same GitHub push posted three times through the real ingress app starts each workflow once."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from pathlib import Path

import httpx
import pytest

import services.ingress as ingress
from services.dispatcher import run_id_for
from shared.entities import Binding
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic, wait_until
from tests.dispatcher.helpers import outputs, running_dispatcher

pytestmark = pytest.mark.kafka

SECRET = "gh-secret-for-dispatcher-tests"


async def test_push_posted_three_times_through_ingress_yields_one_command_per_workflow(
    bootstrap: str, settings: Settings, topics: Topics, fixtures_dir: Path
) -> None:
    bindings = [
        Binding(workflow_id="wf-ci", events=["push"]),
        Binding(workflow_id="wf-any", events=["*"]),
        Binding(workflow_id="wf-prs", events=["pull_request.*"]),
    ]
    await put_entities(
        bootstrap,
        topics.config,
        webhook("gh-main", provider="github", secrets=[SECRET], bindings=bindings),
    )
    body = (fixtures_dir / "github" / "push" / "payload.json").read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": "3f1c2b9e-0000-4000-8000-000000000001",
        "x-hub-signature-256": signature,
    }
    app = ingress.create_ingress_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            for _ in range(3):
                response = await client.post(
                    "/webhooks/gh-main/github", content=body, headers=headers
                )
                assert response.status_code == 202, response.text
    await read_topic(bootstrap, topics.inbound, min_count=3)
    async with running_dispatcher(bootstrap, topics) as dispatcher:
        await wait_until(lambda: dispatcher.ledger.size() >= 2, timeout=20, message="two runs")
    cmds, queued = await outputs(bootstrap, topics, min_commands=2)
    delivery = headers["x-github-delivery"]
    expected = {(run_id_for("gh-main", delivery, w), w): 1 for w in ("wf-ci", "wf-any")}
    assert dict(Counter((c.run_id, c.workflow_id) for c in cmds)) == expected
    assert dict(Counter((q.run_id, q.workflow_id) for q in queued)) == expected
