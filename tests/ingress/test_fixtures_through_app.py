"""Every GitHub, GitLab and Slack fixture, signed, through the real app onto ``inbound``.

All posts go out concurrently and the topic is read once, so the test stays fast.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from services.ingress._events import dedupe_id
from shared.cloudevents import decode
from shared.messages import WebhookReceived
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic
from tests.ingress.helpers import github_headers, ingress_client, slack_headers

pytestmark = pytest.mark.kafka

GH_SECRET = "gh-fixture-secret"
GL_TOKEN = "gl-fixture-token"
SLACK_SECRET = "slack-fixture-secret"
CREDENTIAL_HEADERS = {"x-hub-signature-256", "x-gitlab-token", "x-slack-signature"}


def github_cases(fixtures: Path) -> list[dict[str, Any]]:
    cases = []
    for path in sorted((fixtures / "github").glob("*/*.json")):
        raw = path.read_bytes()
        payload = json.loads(raw)
        event = path.parent.name
        action = payload.get("action") if isinstance(payload, dict) else None
        expected = f"{event}.{action}" if isinstance(action, str) else event
        for form in (False, True):
            body = urlencode({"payload": raw.decode()}).encode() if form else raw
            delivery = str(uuid.uuid4())
            headers = github_headers(GH_SECRET, body, event, delivery)
            headers["Content-Type"] = (
                "application/x-www-form-urlencoded" if form else "application/json"
            )
            cases.append(
                {
                    "path": "/webhooks/gh/github",
                    "body": body,
                    "headers": headers,
                    "id": delivery,
                    "event_type": expected,
                    "payload": payload,
                    "status": 200 if event == "ping" else 202,
                }
            )
    return cases


def gitlab_expected(header: str, body: dict[str, Any]) -> str:
    name = header.removesuffix(" Hook").lower().replace(" ", "_")
    return f"system.{body['event_name']}" if name == "system" else name


def gitlab_cases(fixtures: Path) -> list[dict[str, Any]]:
    cases = []
    for path in sorted((fixtures / "gitlab").glob("*.json")):
        fixture = json.loads(path.read_text())
        body = orjson.dumps(fixture["body"])
        key = str(uuid.uuid4())
        headers = {
            **fixture["headers"],
            "X-Gitlab-Token": GL_TOKEN,
            "Idempotency-Key": key,
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "Content-Type": "application/json",
        }
        cases.append(
            {
                "path": "/webhooks/gl/gitlab",
                "body": body,
                "headers": headers,
                "id": key,
                "event_type": gitlab_expected(
                    fixture["headers"]["X-Gitlab-Event"], fixture["body"]
                ),
                "payload": fixture["body"],
                "status": 202,
            }
        )
    return cases


SLACK_EXPECTED = {
    "slash-command.json": ("slash_command", 200),
    "signing-vector.json": ("slash_command", 200),
    "event-callback-app-mention.json": ("event_callback.app_mention", 202),
    "block-actions.json": ("block_actions", 200),
    "view-submission.json": ("view_submission", 200),
    "url-verification.json": ("url_verification", 200),
}


def slack_cases(fixtures: Path) -> list[dict[str, Any]]:
    cases = []
    for path in sorted((fixtures / "slack").glob("*.json")):
        fixture = json.loads(path.read_text())
        body = fixture["body"].encode()
        headers = {**slack_headers(SLACK_SECRET, body), "Content-Type": fixture["content_type"]}
        kind, status = SLACK_EXPECTED[path.name]
        cases.append(
            {
                "path": "/webhooks/sl/slack",
                "body": body,
                "headers": headers,
                "id": None,
                "event_type": kind,
                "status": status,
            }
        )
    return cases


async def test_every_provider_fixture_arrives_on_inbound_with_its_event_type(
    settings: Settings, topics: Topics, fixtures_dir: Path
):
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh", provider="github", secrets=[GH_SECRET]),
        webhook("gl", provider="gitlab", secrets=[GL_TOKEN]),
        webhook("sl", provider="slack", secrets=[SLACK_SECRET], ack_text="on it"),
    )
    github = github_cases(fixtures_dir)
    gitlab = gitlab_cases(fixtures_dir)
    slack = slack_cases(fixtures_dir)
    assert len(github) == 2 * 270
    cases = github + gitlab + slack

    gate = asyncio.Semaphore(64)
    async with ingress_client(settings) as http:

        async def post(case: dict[str, Any]) -> httpx.Response:
            async with gate:
                return await http.post(case["path"], content=case["body"], headers=case["headers"])

        responses = await asyncio.gather(*(post(c) for c in cases))

    wrong = [
        (c["path"], c["event_type"], r.status_code, r.text[:200])
        for c, r in zip(cases, responses, strict=True)
        if r.status_code != c["status"]
    ]
    assert not wrong, wrong[:5]
    for case, response in zip(cases, responses, strict=True):
        if case["id"] is not None:
            assert response.json() == {"id": case["id"]}
    challenge = next(
        r for c, r in zip(cases, responses, strict=True) if c["event_type"] == "url_verification"
    )
    assert challenge.json()["challenge"].startswith("3eZbrw1aBm2rZgRNFdxV")

    published = [c for c in cases if c["event_type"] != "url_verification"]
    records = await read_topic(
        settings.kafka_bootstrap_servers, topics.inbound, min_count=len(published), timeout=30
    )
    assert len(records) == len(published)
    events = [decode(list(r.headers.items()), r.value, WebhookReceived) for r in records]

    by_id = {e.data.provider_event_id: (r, e) for r, e in zip(records, events, strict=True)}
    for case in github + gitlab:
        record, event = by_id[case["id"]]
        message = event.data
        assert message.event_type == case["event_type"], case["path"]
        assert message.payload == case["payload"]
        assert record.key == message.webhook_id.encode()
        assert event.id == dedupe_id(message.webhook_id, case["id"])
        assert not CREDENTIAL_HEADERS & set(message.headers)

    slack_types = sorted(e.data.event_type for e in events if e.data.provider == "slack")
    assert slack_types == sorted(
        c["event_type"] for c in slack if c["event_type"] != "url_verification"
    )
    form_ids = {c["id"] for c in github if "form" in c["headers"]["Content-Type"]}
    assert all(by_id[i][1].data.payload_encoding == "json" for i in form_ids)
