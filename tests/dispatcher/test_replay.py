"""Replayed inbound records start new runs, once per replay; runs name their trigger."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.dispatcher import run_id_for
from shared.entities import Binding
from shared.messages import ReplayMarker, inbound_event_id
from shared.topics import Topics
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic, wait_until
from tests.dispatcher.helpers import (
    outputs,
    push_event,
    run_counts,
    running_dispatcher,
    write_inbound,
)

pytestmark = pytest.mark.kafka


def test_a_replay_id_gives_a_run_id_of_its_own():
    original = run_id_for("gh", "d-1", "wf")
    assert run_id_for("gh", "d-1", "wf", None) == original
    assert run_id_for("gh", "d-1", "wf", "rpl-1") not in (
        original,
        run_id_for("gh", "d-1", "wf", "rpl-2"),
    )
    assert run_id_for("gh", "d-1", "wf", "rpl-1") == run_id_for("gh", "d-1", "wf", "rpl-1")


async def test_replays_start_once_per_replay_and_redeliveries_stay_deduplicated(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    await put_entities(
        bootstrap,
        topics.config,
        webhook("gh-main", provider="github", bindings=[Binding(workflow_id="wf-ci")]),
    )
    original = push_event(fixtures_dir, delivery_id="d-1")
    marker = ReplayMarker(id="rpl-1", requested_at=datetime.now(UTC), of="in_0_0")
    replayed = original.model_copy(update={"replay": marker})
    # The original, the same replay written twice (a replay request sent twice), and the
    # provider's redelivery arriving while the replay runs.
    await write_inbound(bootstrap, topics, original, replayed, replayed, original)
    async with running_dispatcher(bootstrap, topics) as dispatcher:
        await wait_until(lambda: dispatcher.ledger.size() >= 2, timeout=20, message="two runs")
        await wait_until(lambda: dispatcher.committed_batches >= 1, timeout=10, message="a commit")
    cmds, queued = await outputs(bootstrap, topics, min_commands=2)
    first, again = (
        run_id_for("gh-main", "d-1", "wf-ci"),
        run_id_for("gh-main", "d-1", "wf-ci", "rpl-1"),
    )
    assert dict(run_counts(cmds)) == {(first, "wf-ci"): 1, (again, "wf-ci"): 1}
    assert dict(run_counts(queued)) == {(first, "wf-ci"): 1, (again, "wf-ci"): 1}

    inbound = await read_topic(bootstrap, topics.inbound, min_count=4)
    ids = [inbound_event_id(r.partition, r.offset) for r in inbound]
    by_run = {q.run_id: q.trigger for q in queued}
    first_trigger, replay_trigger = by_run[first], by_run[again]
    assert first_trigger is not None and replay_trigger is not None
    assert first_trigger.replay_id is None and first_trigger.inbound_event_id == ids[0]
    assert replay_trigger.replay_id == "rpl-1"
    assert replay_trigger.inbound_event_id == ids[1], "the first replay record started it"
    assert {c.run_id: c.trigger for c in cmds} == by_run
