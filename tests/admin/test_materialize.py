"""The view survives restarts, is rebuilt from the topics when its file is lost, and expires
rows with their topics' retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.deadletter import DeadLetters
from shared.messages import RunTrigger, inbound_event_id
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription, webhook
from testkit.kafka import wait_until
from testkit.opsdata import attempt, inbound, keyed, queued, write

from .conftest import Admin, running_admin

pytestmark = pytest.mark.kafka

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def fill(settings: Settings, topics: Topics) -> dict[str, str]:
    """Some of everything the view holds; returns the ids the snapshot asks for."""
    bootstrap = settings.kafka_bootstrap_servers
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    await put_entities(
        bootstrap,
        topics.config,
        subscription("sub-a", secrets=[SECRET], url="https://r.example/"),
        webhook("gh-main", provider="github"),
    )
    await write(
        bootstrap,
        topics.delivery_attempts,
        [
            attempt("d1", 1, "failed", t0),
            attempt("d1", 2, "failed", t0 + timedelta(seconds=5)),
            attempt("d1", 3, "exhausted", t0 + timedelta(seconds=30)),
            attempt("d2", 1, "succeeded", t0 + timedelta(seconds=10), run_id="run-2"),
            attempt("d3", 1, "failed", t0 + timedelta(seconds=20), subscription_id="sub-b"),
        ],
    )
    first, again, other = inbound("e-1"), inbound("e-1"), inbound("e-2", event_type="issues")
    metas = await write(bootstrap, topics.inbound, [first, again, other])
    ids = [inbound_event_id(m.partition, m.offset) for m in metas]
    trigger = RunTrigger(webhook_id="gh-main", inbound_event_id=ids[0], provider_event_id="e-1")
    await write(bootstrap, topics.workflow_events, [queued("run-1", trigger)])
    poison = keyed(inbound("e-3"))
    headers = DeadLetters(None, topics.dlq, service="dispatcher").record_headers(  # type: ignore[arg-type]
        headers=poison.headers,
        reason="value fails the schema",
        code="invalid_payload",
        source_topic=topics.inbound,
        partition=0,
        offset=7,
    )
    (dlq,) = await write(bootstrap, topics.dlq, [poison.__class__(poison.key, b"{oops", headers)])
    return {"inbound": ids[0], "dead_letter": f"dlq_{dlq.partition}_{dlq.offset}"}


async def snapshot(client: httpx.AsyncClient, ids: dict[str, str]) -> dict[str, Any]:
    paths = [
        "/v1/deliveries?attempts=true",
        "/v1/deliveries?subscription_id=sub-a&outcome=exhausted",
        "/v1/deliveries?run_id=run-2",
        "/v1/deliveries/d1",
        "/v1/inbound-events",
        "/v1/inbound-events?outcome=duplicate",
        f"/v1/inbound-events/{ids['inbound']}",
        "/v1/dead-letters",
        f"/v1/dead-letters/{ids['dead_letter']}",
        "/v1/subscriptions/sub-a/health",
    ]
    out = {}
    for path in paths:
        answer = await client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        out[path] = answer.json()
    return out


async def caught_up(admin: Admin) -> None:
    await admin.ctx.materializer.wait_ready(timeout=30)

    async def filled() -> bool:
        answer = await admin.client.get("/v1/dead-letters")
        return answer.status_code == 200 and len(answer.json()["items"]) == 1

    await wait_until(filled, timeout=15, message="the view holding every topic's rows")


async def test_a_restart_answers_the_same_rows_and_a_lost_file_is_rebuilt(
    settings: Settings, topics: Topics
):
    ids = await fill(settings, topics)
    async with running_admin(settings, topics) as first:
        await caught_up(first)
        before = await snapshot(first.client, ids)
        read_first = first.ctx.materializer.records_applied
    assert [d["id"] for d in before["/v1/deliveries?attempts=true"]["items"]] == ["d1", "d3", "d2"]
    assert before["/v1/deliveries?run_id=run-2"]["items"][0]["id"] == "d2"
    detail = before[f"/v1/inbound-events/{ids['inbound']}"]
    assert detail["outcome"] == "triggered" and [r["run_id"] for r in detail["runs"]] == ["run-1"]
    assert detail["verification"] == "github-sha256" and detail["headers"]["x-github-event"]
    assert len(before["/v1/inbound-events?outcome=duplicate"]["items"]) == 1
    letter = before[f"/v1/dead-letters/{ids['dead_letter']}"]
    assert letter["reason"] == "invalid_payload" and letter["excerpt"] == "{oops"

    async with running_admin(settings, topics) as again:
        await caught_up(again)
        assert await snapshot(again.client, ids) == before
        assert again.ctx.materializer.records_applied == 0, "resumed at the stored offsets"

    path = settings.admin_view_path
    assert isinstance(path, Path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 (a test's few files)
    async with running_admin(settings, topics) as rebuilt:
        await caught_up(rebuilt)
        assert await snapshot(rebuilt.client, ids) == before
        assert rebuilt.ctx.materializer.records_applied == read_first, "read from the start"


async def test_rows_older_than_their_topics_retention_expire(admin: Admin):
    bootstrap = admin.settings.kafka_bootstrap_servers
    now = datetime.now(UTC)
    await write(
        bootstrap,
        admin.topics.delivery_attempts,
        [
            attempt("old", 1, "failed", now - timedelta(days=15)),  # the topic keeps 14 days
            attempt("new", 1, "failed", now - timedelta(days=13)),
        ],
    )

    async def listed() -> list[str]:
        answer = await admin.client.get("/v1/deliveries")
        return [d["id"] for d in answer.json()["items"]] if answer.status_code == 200 else []

    await wait_until(lambda: _has(listed, 2), timeout=15, message="both deliveries")
    assert await admin.ctx.materializer.expire() == 2, "the old delivery and its attempt"
    assert await listed() == ["new"]


async def _has(listed: Any, count: int) -> bool:
    return len(await listed()) == count
