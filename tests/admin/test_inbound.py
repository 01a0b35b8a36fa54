"""Inbound events: combinable filters, newest first, cursor pages, one event in full."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.messages import RunTrigger, inbound_event_id
from testkit.kafka import wait_until
from testkit.opsdata import inbound, queued, write

from .conftest import Admin

pytestmark = pytest.mark.kafka


async def test_inbound_events_filter_and_page(admin: Admin):
    bootstrap = admin.settings.kafka_bootstrap_servers
    t0 = datetime.now(UTC) - timedelta(hours=2)
    events = [
        inbound("a", received_at=t0),
        inbound("b", received_at=t0 + timedelta(minutes=1), event_type="issues.opened"),
        inbound("a", received_at=t0 + timedelta(minutes=2)),  # the provider's redelivery
        inbound("c", received_at=t0 + timedelta(minutes=3), webhook_id="gh-other"),
    ]
    metas = await write(bootstrap, admin.topics.inbound, events)
    ids = [inbound_event_id(m.partition, m.offset) for m in metas]
    trigger = RunTrigger(webhook_id="gh-main", inbound_event_id=ids[1], provider_event_id="b")
    await write(bootstrap, admin.topics.workflow_events, [queued("run-b", trigger)])

    async def listed(**params: Any) -> list[str]:
        answer = await admin.client.get("/v1/inbound-events", params=params)
        assert answer.status_code == 200, answer.text
        return [e["id"] for e in answer.json()["items"]]

    async def linked() -> bool:
        return await listed(outcome="triggered") == [ids[1]]

    await wait_until(linked, timeout=15, message="the run linked to its event")
    assert await listed() == ids[::-1]
    assert await listed(webhook_id="gh-main") == [ids[2], ids[1], ids[0]]
    assert await listed(webhook_id="gh-main", provider_event_id="a") == [ids[2], ids[0]]
    assert await listed(outcome="duplicate") == [ids[2]]
    assert await listed(outcome="accepted", webhook_id="gh-main") == [ids[0]]
    assert await listed(event_type="issues.opened", provider="github") == [ids[1]]
    window = {
        "since": (t0 + timedelta(seconds=30)).isoformat(),
        "until": (t0 + timedelta(minutes=3)).isoformat(),
    }
    assert await listed(**window) == [ids[2], ids[1]]

    first = (await admin.client.get("/v1/inbound-events", params={"limit": 3})).json()
    rest = await listed(limit=3, cursor=first["next_cursor"])
    assert [e["id"] for e in first["items"]] + rest == ids[::-1]

    detail = (await admin.client.get(f"/v1/inbound-events/{ids[1]}")).json()
    assert detail["source_ip"] == "192.30.252.1" and detail["verified"] is True
    assert detail["payload"] == {"ref": "refs/heads/main"}
    assert [r["run_id"] for r in detail["runs"]] == ["run-b"]
    assert (await admin.client.get("/v1/inbound-events/in_9_9")).status_code == 404
    assert (
        await admin.client.get("/v1/inbound-events", params={"cursor": "bm9wZQ"})
    ).status_code == 422
