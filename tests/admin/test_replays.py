"""Recoveries read workflow-events over their window; replays start new runs, once per request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.delivery import delivery_id
from services.dispatcher import run_id_for
from shared.cloudevents import decode
from shared.entities import Binding
from shared.messages import DeliveryDue, SourceRecord
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription, webhook
from testkit.kafka import read_topic, wait_until
from testkit.opsdata import attempt, inbound, write
from testkit.receivers import completed
from tests.dispatcher.helpers import commands, queued_events, running_dispatcher

from .conftest import Admin, running_admin

pytestmark = pytest.mark.kafka

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHERS = 300


async def job_done(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal state
        state = (await client.get(f"/v1/replays/{job_id}")).json()
        return state.get("status") == "completed"

    await wait_until(done, timeout=20, message=f"job {job_id} completed")
    return state


async def test_recover_finds_a_failure_older_than_hundreds_of_deliveries_after_a_restart(
    settings: Settings, topics: Topics
):
    bootstrap = settings.kafka_bootstrap_servers
    await put_entities(
        bootstrap,
        topics.config,
        subscription("sub-a", secrets=[SECRET], url="https://r.example/", events=["workflow.*"]),
    )
    before = await write(bootstrap, topics.workflow_events, [completed("run-before")])
    await asyncio.sleep(0.05)  # so the window's start falls between the two events
    since = datetime.now(UTC)
    events = [completed("run-old"), *(completed(f"run-{i}") for i in range(OTHERS))]
    metas = await write(bootstrap, topics.workflow_events, events)

    def ids_of(meta: Any) -> str:
        return delivery_id(
            SourceRecord(topic=meta.topic, partition=meta.partition, offset=meta.offset), "sub-a"
        )

    old, early = ids_of(metas[0]), ids_of(before[0])
    t0 = datetime.now(UTC) - timedelta(hours=1)
    await write(
        bootstrap,
        topics.delivery_attempts,
        [
            attempt(early, 1, "exhausted", t0, run_id="run-before"),
            attempt(old, 1, "failed", t0, run_id="run-old"),
            attempt(old, 2, "exhausted", t0 + timedelta(seconds=1), run_id="run-old"),
            *(
                attempt(ids_of(m), 1, "succeeded", t0 + timedelta(seconds=2 + i))
                for i, m in enumerate(metas[1:])
            ),
        ],
    )
    async with running_admin(settings, topics) as first:
        await first.ctx.materializer.wait_ready(timeout=30)
    # A new process: nothing of the old failure is in memory; the view and Kafka have it.
    async with running_admin(settings, topics) as admin:
        await wait_until(lambda: admin.ctx.materializer.ready, timeout=30, message="the view")
        await wait_until(lambda: _jobs_up(admin), timeout=10, message="the job runner")
        body = {"id": "rcv-1", "since": since.isoformat()}
        answer = await admin.client.post("/v1/subscriptions/sub-a/recover", json=body)
        assert answer.status_code == 202, answer.text
        state = answer.json()
        assert state["status"] == "completed" and state["delivery_ids"] == [old]
        assert state["counts"] == {"scanned": OTHERS + 1, "matched": OTHERS + 1, "redelivered": 1}

        again = await admin.client.post("/v1/subscriptions/sub-a/recover", json=body)
        assert again.status_code == 200 and again.json()["id"] == "rcv-1"
        other = await admin.client.post(
            "/v1/subscriptions/sub-a/recover", json={**body, "until": datetime.now(UTC).isoformat()}
        )
        assert other.status_code == 409, "the same id with other parameters"

    tier = await read_topic(bootstrap, topics.retry_tier(2), min_count=1)
    dues = [decode(list(r.headers.items()), r.value, DeliveryDue).data for r in tier]
    assert [(d.delivery_id, d.message_id, d.attempt) for d in dues] == [(old, "msg_" + old[4:], 1)]
    assert '"run-old"' in dues[0].body, "the recorded body"


def _jobs_up(admin: Admin) -> bool:
    return admin.ctx._jobs is not None


async def test_replaying_the_last_hour_starts_one_new_run_per_event_once(
    settings: Settings, topics: Topics
):
    bootstrap = settings.kafka_bootstrap_servers
    await put_entities(
        bootstrap,
        topics.config,
        webhook("gh-main", provider="github", bindings=[Binding(workflow_id="wf-ci")]),
        webhook("gh-other", provider="github", bindings=[Binding(workflow_id="wf-ci")]),
    )
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    originals = [inbound(f"e-{i}") for i in range(3)]
    await write(
        bootstrap,
        topics.inbound,
        [*originals, inbound("e-0"), inbound("x-1", webhook_id="gh-other")],
    )
    async with (
        running_dispatcher(bootstrap, topics) as dispatcher,
        running_admin(settings, topics) as admin,
    ):
        await wait_until(lambda: dispatcher.ledger.size() == 4, timeout=20, message="4 runs")
        await wait_until(lambda: _jobs_up(admin), timeout=30, message="the job runner")
        request = {"since": hour_ago.isoformat()}
        first = await admin.client.post("/v1/webhooks/gh-main/replay", json=request)
        assert first.status_code == 202, first.text
        replay_id = first.json()["id"]
        # The provider redelivers while the replay runs; the replay request is sent twice.
        await write(bootstrap, topics.inbound, [inbound("e-1")])
        second = await admin.client.post("/v1/webhooks/gh-main/replay", json=request)
        assert second.status_code in (200, 202) and second.json()["id"] == replay_id
        state = await job_done(admin.client, replay_id)
        assert state["counts"]["written"] == 4, "e-0, its redelivery, e-1 and e-2"
        await wait_until(lambda: dispatcher.ledger.size() == 7, timeout=20, message="3 replays")

        async def started() -> bool:
            answer = await admin.client.get(f"/v1/replays/{replay_id}")
            return bool(answer.json()["runs_started"] == 3)

        await wait_until(started, timeout=15, message="the view linking the replayed runs")
        third = await admin.client.post("/v1/webhooks/gh-main/replay", json=request)
        assert third.status_code == 200 and third.json()["status"] == "completed"
        replays = await admin.client.get("/v1/inbound-events", params={"replay_id": replay_id})
        assert len(replays.json()["items"]) == 4
        await asyncio.sleep(0.5)  # time for anything a second request might have started
        assert dispatcher.ledger.size() == 7

    cmds = commands(await read_topic(bootstrap, topics.workflow_commands, min_count=7))
    expected = {run_id_for("gh-main", f"e-{i}", "wf-ci") for i in range(3)}
    replayed = {run_id_for("gh-main", f"e-{i}", "wf-ci", replay_id) for i in range(3)}
    expected |= replayed | {run_id_for("gh-other", "x-1", "wf-ci")}
    assert sorted(c.run_id for c in cmds) == sorted(expected), "each run exactly once"
    queued = queued_events(await read_topic(bootstrap, topics.workflow_events, min_count=7))
    marks = {q.run_id: q.trigger.replay_id for q in queued if q.trigger is not None}
    assert {r for r, mark in marks.items() if mark == replay_id} == replayed
