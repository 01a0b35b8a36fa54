"""The dispatcher against the real broker: one run per (event, bound workflow), whatever happens."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from services.dispatcher import Dispatcher, run_id_for
from shared.cloudevents import decode
from shared.entities import Binding
from shared.messages import WebhookReceived
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic, wait_until
from tests.dispatcher.helpers import (
    outputs,
    push_event,
    run_counts,
    running_dispatcher,
    write_inbound,
    write_raw,
)

pytestmark = pytest.mark.kafka

BINDINGS = [
    Binding(workflow_id="wf-ci", events=["push", "pull_request.*"]),
    Binding(
        workflow_id="wf-tags", events=["push"], filter="starts_with(payload.ref, 'refs/tags/')"
    ),
    Binding(workflow_id="wf-main-only", events=["push"], filter="payload.ref == 'refs/heads/main'"),
    Binding(workflow_id="wf-issues", events=["issues.*"]),
    Binding(workflow_id="wf-broken", events=["*"], filter="payload.ref =="),
]


async def test_push_posted_three_times_yields_one_command_per_bound_workflow(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    await put_entities(
        bootstrap, topics.config, webhook("gh-main", provider="github", bindings=BINDINGS)
    )
    event = push_event(fixtures_dir, delivery_id="d-three")
    await write_inbound(bootstrap, topics, event, event, event)
    async with running_dispatcher(bootstrap, topics) as dispatcher:
        await wait_until(lambda: dispatcher.ledger.size() >= 2, timeout=20, message="two runs")
        await wait_until(lambda: dispatcher.committed_batches >= 1, timeout=10, message="a commit")
    cmds, queued = await outputs(bootstrap, topics, min_commands=2)
    expected = {
        (run_id_for("gh-main", "d-three", "wf-ci"), "wf-ci"): 1,
        (run_id_for("gh-main", "d-three", "wf-tags"), "wf-tags"): 1,
    }
    assert dict(run_counts(cmds)) == expected
    assert dict(run_counts(queued)) == expected
    assert all(q.from_ is None for q in queued)
    # The command carries the inbound event as the run's input.
    assert {c.input.provider_event_id for c in cmds} == {"d-three"}
    assert cmds[0].input.payload["ref"] == "refs/tags/simple-tag"


async def test_redelivery_after_restart_starts_no_second_run(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    await put_entities(
        bootstrap, topics.config, webhook("gh-main", provider="github", bindings=BINDINGS[:1])
    )
    tx_id = f"{topics.prefix}dispatcher-restart"
    await write_inbound(bootstrap, topics, push_event(fixtures_dir, delivery_id="d-1"))
    async with running_dispatcher(bootstrap, topics, transactional_id=tx_id) as dispatcher:
        await wait_until(lambda: dispatcher.ledger.size() == 1, timeout=20, message="first run")
    # A new process knows only what the changelog says.
    await write_inbound(
        bootstrap,
        topics,
        push_event(fixtures_dir, delivery_id="d-1"),
        push_event(fixtures_dir, delivery_id="d-2"),
    )
    async with running_dispatcher(bootstrap, topics, transactional_id=tx_id) as dispatcher:
        await wait_until(lambda: dispatcher.ledger.size() == 2, timeout=20, message="second run")
        await wait_until(lambda: dispatcher.committed_batches >= 1, timeout=10, message="a commit")
    cmds, queued = await outputs(bootstrap, topics, min_commands=2)
    assert sorted(c.provider_event_id for c in cmds) == ["d-1", "d-2"]
    assert len(queued) == 2


async def test_poison_goes_to_dlq_in_the_transaction_and_dispatching_goes_on(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    await put_entities(
        bootstrap, topics.config, webhook("gh-main", provider="github", bindings=BINDINGS[:1])
    )
    await write_raw(
        bootstrap,
        topics.inbound,
        b"gh-main",
        b"{not json",
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"x"),
            ("ce_source", b"/t"),
            ("ce_type", WebhookReceived.ce_type.encode()),
        ],
    )
    await write_raw(bootstrap, topics.inbound, b"gh-main", b"{}", [])
    await write_inbound(bootstrap, topics, push_event(fixtures_dir, delivery_id="d-after-poison"))
    async with running_dispatcher(bootstrap, topics) as dispatcher:
        await wait_until(
            lambda: dispatcher.ledger.size() == 1, timeout=20, message="the good event"
        )
    dlq = await read_topic(bootstrap, topics.dlq, min_count=2)
    assert len(dlq) == 2
    reasons = {r.headers["hookline_error_code"] for r in dlq}
    assert reasons == {b"invalid_payload", b"missing_header"}
    assert {r.value for r in dlq} == {b"{not json", b"{}"}
    assert all(r.headers["hookline_service"] == b"dispatcher" for r in dlq)
    cmds, _ = await outputs(bootstrap, topics, min_commands=1)
    assert [c.provider_event_id for c in cmds] == ["d-after-poison"]


async def test_events_for_unknown_webhooks_and_unbound_types_start_nothing(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    await put_entities(
        bootstrap, topics.config, webhook("gh-main", provider="github", bindings=[BINDINGS[3]])
    )
    await write_inbound(
        bootstrap,
        topics,
        push_event(fixtures_dir, webhook_id="gh-unknown", delivery_id="u-1"),
        push_event(fixtures_dir, delivery_id="p-1"),  # push: wf-issues does not bind it
        push_event(fixtures_dir, delivery_id="i-1", event_type="issues.opened"),
    )
    async with running_dispatcher(bootstrap, topics, unknown_webhook_wait=0.3) as dispatcher:
        await wait_until(
            lambda: dispatcher.ledger.size() == 1, timeout=20, message="the issues run"
        )
    cmds, queued = await outputs(bootstrap, topics, min_commands=1)
    assert [(c.workflow_id, c.provider_event_id) for c in cmds] == [("wf-issues", "i-1")]
    assert len(queued) == 1


async def test_changelog_is_written_on_the_inbound_partition(
    bootstrap: str, topics: Topics, settings: Settings, fixtures_dir: Path
) -> None:
    ids = [f"gh-{i}" for i in range(6)]
    await put_entities(
        bootstrap,
        topics.config,
        *(webhook(i, provider="github", bindings=BINDINGS[:1]) for i in ids),
    )
    await write_inbound(
        bootstrap,
        topics,
        *(push_event(fixtures_dir, webhook_id=i, delivery_id=f"d-{i}") for i in ids),
    )
    async with running_dispatcher(bootstrap, topics) as dispatcher:
        await wait_until(lambda: dispatcher.ledger.size() == 6, timeout=20, message="six runs")
    inbound = await read_topic(bootstrap, topics.inbound, min_count=6)
    partition_of = {
        decode(list(r.headers.items()), r.value, WebhookReceived).data.webhook_id: r.partition
        for r in inbound
    }
    assert len(set(partition_of.values())) > 1  # the test means something only across partitions
    ledger = await read_topic(bootstrap, topics.dispatcher_runs, min_count=6)
    for record in ledger:
        assert record.value is not None
        webhook_id = orjson.loads(record.value)["webhook_id"]
        assert record.partition == partition_of[webhook_id]


async def test_two_replicas_and_rebalances_keep_one_run_per_event_and_workflow(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    ids = [f"gh-{i}" for i in range(6)]
    await put_entities(
        bootstrap,
        topics.config,
        *(webhook(i, provider="github", bindings=BINDINGS[:2]) for i in ids),
    )
    events = [
        push_event(fixtures_dir, webhook_id=ids[n % 6], delivery_id=f"d-{n}") for n in range(60)
    ]

    def runs_of(*dispatchers: Dispatcher) -> int:
        return sum(d.ledger.size() for d in dispatchers)

    async with running_dispatcher(bootstrap, topics) as first:
        await write_inbound(bootstrap, topics, *events[:20])
        await wait_until(lambda: runs_of(first) == 40, timeout=20, message="first 20 events")
        # A second replica joins: partitions (and their ledger partitions) move to it.
        async with running_dispatcher(bootstrap, topics) as second:
            await wait_until(
                lambda: (
                    len(first.assignment()) + len(second.assignment()) == 3
                    and bool(second.assignment())
                ),
                timeout=20,
                message="the group to share the partitions",
            )
            await write_inbound(bootstrap, topics, *events[:40])  # 20 redeliveries, 20 new
            await wait_until(
                lambda: runs_of(first, second) == 80, timeout=20, message="first 40 events"
            )
        # The second replica leaves: the first takes its partitions back, reloading their ledger.
        await wait_until(
            lambda: len(first.assignment()) == 3, timeout=20, message="partitions back"
        )
        await write_inbound(bootstrap, topics, *events)  # 40 redeliveries, 20 new
        await wait_until(lambda: runs_of(first) == 120, timeout=20, message="all 60 events")
    cmds, queued = await outputs(bootstrap, topics, min_commands=120)
    expected = {
        (run_id_for(e.webhook_id, e.provider_event_id, w), w): 1
        for e in events
        for w in ("wf-ci", "wf-tags")
    }
    assert dict(run_counts(cmds)) == expected
    assert dict(run_counts(queued)) == expected


async def test_event_for_a_webhook_created_a_moment_ago_waits_for_the_config_view(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    await write_inbound(bootstrap, topics, push_event(fixtures_dir, delivery_id="new-hook"))
    async with running_dispatcher(bootstrap, topics, unknown_webhook_wait=15) as dispatcher:
        # The event is in hand and the webhook unknown: only now does its config arrive.
        await wait_until(
            lambda: dispatcher.unknown_webhook_waits == 1, timeout=20, message="a wait"
        )
        await put_entities(
            bootstrap, topics.config, webhook("gh-main", provider="github", bindings=BINDINGS[:1])
        )
        await wait_until(lambda: dispatcher.ledger.size() == 1, timeout=20, message="the run")
    cmds, _ = await outputs(bootstrap, topics, min_commands=1)
    assert [c.provider_event_id for c in cmds] == ["new-hook"]
