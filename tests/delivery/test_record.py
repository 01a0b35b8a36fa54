"""The record step: what each outcome writes (no broker: writes are plain values)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.delivery._codec import Due
from services.delivery._isolation import CircuitBreakers, FailingStreaks
from services.delivery._record import Recorder
from services.delivery._schedule import RetryPolicy
from services.delivery._sender import HttpOutcome
from shared.cloudevents import decode
from shared.deadletter import DeadLetters
from shared.entities import Subscription
from shared.messages import (
    DeliveryAttempted,
    DeliveryDue,
    DeliveryExhausted,
    SubscriptionDisabled,
    SubscriptionRecovered,
)
from shared.topics import topic_registry
from tests.delivery.topictools import a_due

TOPICS = topic_registry("r.", partitions=1, retry_tiers=3)
NOW = datetime.now(UTC)
SUB = Subscription(id="sub", created_at=NOW, updated_at=NOW, url="https://example.com/h")


def recorder(threshold: int = 5, disable_after: float = 3600.0) -> tuple[Recorder, CircuitBreakers]:
    breakers = CircuitBreakers(threshold, 30.0)
    dead_letters = DeadLetters(None, TOPICS.dlq, service="delivery")  # type: ignore[arg-type]
    return (
        Recorder(
            topics=TOPICS,
            dead_letters=dead_letters,
            policy=RetryPolicy((1.0, 2.0, 3.0), jitter=0.0),
            breakers=breakers,
            streaks=FailingStreaks(),
            disable_after_failing_for=disable_after,
        ),
        breakers,
    )


def attempted(write: tuple[str, object]) -> DeliveryAttempted:
    record = write[1]
    return decode(record.headers, record.value, DeliveryAttempted).data  # type: ignore[attr-defined]


def test_a_success_writes_its_attempt_record_and_closes_the_breaker() -> None:
    record, breakers = recorder(threshold=2)
    breakers.record_failure("sub")
    [write] = record.answered(a_due(), SUB, HttpOutcome(200, None, 12.0, "ok"))
    assert write[0] == TOPICS.delivery_attempts
    assert attempted(write).outcome == "succeeded" and attempted(write).status_code == 200
    assert breakers.allow("sub")


def test_a_success_that_closes_an_open_breaker_tells_subscription_recovered() -> None:
    record, breakers = recorder(threshold=1)
    breakers.record_failure("sub")
    write, told = record.answered(a_due(), SUB, HttpOutcome(200, None, 12.0, "ok"))
    assert attempted(write).outcome == "succeeded"
    assert told[0] == TOPICS.workflow_events and told[1].key == b"sub"
    event = decode(told[1].headers, told[1].value, SubscriptionRecovered)
    assert event.data.host == "example.com" and event.id.startswith("subscription.recovered:sub:")
    [quiet] = record.answered(a_due(), SUB, HttpOutcome(200, None, 12.0, "ok"))  # nothing to tell
    assert attempted(quiet).outcome == "succeeded"


def test_a_failure_hands_the_delivery_to_its_next_tier_and_records_the_attempt() -> None:
    record, breakers = recorder(threshold=1)
    tier, log = record.answered(a_due(), SUB, HttpOutcome(500, None, 3.0, "no"))
    assert tier[0] == TOPICS.retry_tier(2) and log[0] == TOPICS.delivery_attempts
    following = decode(tier[1].headers, tier[1].value, DeliveryDue).data
    assert following.attempt == 2 and following.message_id == "msg_test"
    assert attempted(log).outcome == "failed" and attempted(log).next_attempt_at is not None
    assert not breakers.allow("sub")  # one failure was the threshold


def test_a_hand_on_past_an_open_breaker_writes_only_the_next_tier() -> None:
    record, _ = recorder()
    [tier] = record.circuit_open(a_due(), SUB)
    assert tier[0] == TOPICS.retry_tier(2)


def test_the_last_attempt_goes_to_the_dlq_with_an_exhausted_record() -> None:
    record, _ = recorder()
    last = a_due().later(NOW, attempt=4)
    dead, log, told = record.answered(last, SUB, HttpOutcome(503, None, 3.0))
    assert dead[0] == TOPICS.dlq
    assert dict(dead[1].headers)["hookline_error_code"] == b"delivery_exhausted"
    assert attempted(log).outcome == "exhausted"
    exhausted = decode(told[1].headers, told[1].value, DeliveryExhausted).data
    assert told[0] == TOPICS.workflow_events
    assert (exhausted.attempts, exhausted.status_code, exhausted.left_out) == (4, 503, 0)


def test_delivery_exhausted_is_told_at_most_once_a_minute_and_never_for_a_notice() -> None:
    record, _ = recorder()
    last = a_due().later(NOW, attempt=4)
    assert len(record.answered(last, SUB, HttpOutcome(503, None, 3.0))) == 3
    assert len(record.answered(last, SUB, HttpOutcome(503, None, 3.0))) == 2  # counted
    notice = replace(last, event_type="delivery.exhausted")
    other = SUB.model_copy(update={"id": "ops"})
    assert len(record.answered(notice, other, HttpOutcome(503, None, 3.0))) == 2


def test_a_schedule_of_its_own_waits_on_the_tier_whose_gap_is_the_shortest_not_below_it() -> None:
    record, _ = recorder()
    own = SUB.model_copy(update={"retry_schedule": [0.5, 2.5, 9.0, 9.0, 9.0]})
    tiers = []
    due = a_due()
    for attempt in range(1, 6):
        writes = record.answered(due.later(NOW, attempt=attempt), own, HttpOutcome(500, None, 1.0))
        tiers.append(writes[0][0])
    # Gaps 0.5, 2.5 and 9 s against tiers of 1, 2 and 3 s: tiers 1, 3 and 3 (the longest).
    assert tiers[:3] == [TOPICS.retry_tier(2), TOPICS.retry_tier(4), TOPICS.retry_tier(4)]
    assert tiers[3] == TOPICS.retry_tier(4) and tiers[4] == TOPICS.retry_tier(4)
    # Six attempts in all: the sixth is the last.
    assert (
        attempted(
            record.answered(due.later(NOW, attempt=6), own, HttpOutcome(500, None, 1.0))[1]
        ).outcome
        == "exhausted"
    )


def test_410_and_a_long_failing_streak_disable_the_subscription_once() -> None:
    record, _ = recorder(disable_after=60.0)
    config, told, log = record.answered(a_due(), SUB, HttpOutcome(410, None, 3.0))
    assert config[0] == TOPICS.config and attempted(log).outcome == "disabled"
    disabled = decode(told[1].headers, told[1].value, SubscriptionDisabled)
    assert disabled.id == "subscription.disabled:sub:2" and disabled.data.version == 2
    assert "410" in disabled.data.reason and told[1].key == b"sub"
    [again] = record.answered(a_due(), SUB, HttpOutcome(410, None, 3.0))  # same version
    assert attempted(again).outcome == "disabled"
    began = a_due()
    streak = Due(
        began.delivery_id,
        began.message_id,
        "other",
        began.event_type,
        began.workflow_id,
        began.source,
        began.body,
        2,
        NOW,
        NOW - timedelta(seconds=120),
    )
    other = SUB.model_copy(update={"id": "other"})
    config, _, log = record.answered(streak, other, HttpOutcome(500, None, 3.0))
    assert config[0] == TOPICS.config and "failing continuously" in (attempted(log).error or "")


def test_skips_and_deferrals() -> None:
    record, _ = recorder()
    [skipped] = record.skipped(a_due(), None)
    assert attempted(skipped).error == "subscription deleted"
    [deferred] = record.deferred(a_due())
    later = decode(deferred[1].headers, deferred[1].value, DeliveryDue).data
    assert deferred[0] == TOPICS.retry_tier(1) and later.attempt == 1 and later.due_at > NOW
