"""The subscription index answers as a scan of every subscription would, without the scan."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from shared.entities import Subscription, event_pattern_matches
from shared.subscription_index import SubscriptionIndex

NOW = datetime(2026, 11, 27, tzinfo=UTC)
PATTERNS = ["*", "workflow.started", "workflow.*", "workflow.st*", "step.?ailed", "step.*", "x"]
EVENT_TYPES = ["workflow.started", "workflow.completed", "workflow", "step.failed", "x", "y"]
WORKFLOWS = ["wf-a", "wf-b", "wf-c"]


def _subscription(i: int, rng: random.Random) -> Subscription:
    workflows = rng.choice([None, [], rng.sample(WORKFLOWS, rng.randint(1, 2))])
    return Subscription(
        id=f"sub-{i}",
        url="https://example.test/hook",
        created_at=NOW,
        updated_at=NOW,
        events=rng.sample(PATTERNS, rng.randint(1, 3)),
        workflow_ids=workflows,
        enabled=rng.random() > 0.2,
    )


def _scan(subs: dict[str, Subscription], event_type: str, workflow: str | None) -> list[str]:
    return [s.id for s in subs.values() if s.wants(event_type, workflow)]


def test_answers_match_a_scan_through_puts_updates_and_removes() -> None:
    rng = random.Random(7)
    index = SubscriptionIndex()
    live: dict[str, Subscription] = {}
    for step in range(3000):
        i = rng.randrange(200)
        key = f"subscription/sub-{i}"
        if rng.random() < 0.2:
            index.remove(key)
            live.pop(key, None)
        else:
            sub = _subscription(i, rng)
            index.put(key, sub)
            # A dict keeps an updated key in place and appends a re-added one: the order
            # the index must reproduce.
            live[key] = sub
        if step % 50 == 0:
            for event_type in EVENT_TYPES:
                for workflow in [*WORKFLOWS, "wf-other", None]:
                    got = [s.id for s in index.matching(event_type, workflow)]
                    assert got == _scan(live, event_type, workflow), (event_type, workflow)


def test_a_lookup_does_not_walk_the_subscriptions_that_do_not_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = SubscriptionIndex()
    for i in range(20_000):
        sub = Subscription(
            id=f"sub-{i}",
            url="https://example.test/hook",
            created_at=NOW,
            updated_at=NOW,
            events=["workflow.*"] if i % 2 else ["workflow.started", "workflow.completed"],
            workflow_ids=[f"wf-{i // 10}"],
        )
        index.put(sub.key, sub)
    calls = 0

    def counting(pattern: str, event_type: str) -> bool:
        nonlocal calls
        calls += 1
        return event_pattern_matches(pattern, event_type)

    monkeypatch.setattr("shared.subscription_index.event_pattern_matches", counting)
    found = index.matching("workflow.started", "wf-42")
    assert [s.id for s in found] == [f"sub-{i}" for i in range(420, 430)]
    # One glob pattern in use, tried once for this event type, and not again.
    assert calls == 1
    index.matching("workflow.started", "wf-43")
    assert calls == 1
