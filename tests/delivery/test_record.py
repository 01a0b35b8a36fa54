"""The record step: what each outcome writes (no broker: writes are plain values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.delivery._codec import Due
from services.delivery._isolation import CircuitBreakers, FailingStreaks
from services.delivery._record import Recorder
from services.delivery._schedule import RetryPolicy
from services.delivery._sender import HttpOutcome
from shared.cloudevents import decode
from shared.deadletter import DeadLetters
from shared.entities import Subscription
from shared.messages import DeliveryAttempted, DeliveryDue
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
    record, breakers = recorder(threshold=1)
    breakers.record_failure("sub")
    [write] = record.answered(a_due(), SUB, HttpOutcome(200, None, 12.0, "ok"))
    assert write[0] == TOPICS.delivery_attempts
    assert attempted(write).outcome == "succeeded" and attempted(write).status_code == 200
    assert breakers.allow("sub")


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
    dead, log = record.answered(last, SUB, HttpOutcome(503, None, 3.0))
    assert dead[0] == TOPICS.dlq
    assert dict(dead[1].headers)["hookline_error_code"] == b"delivery_exhausted"
    assert attempted(log).outcome == "exhausted"


def test_410_and_a_long_failing_streak_disable_the_subscription_once() -> None:
    record, _ = recorder(disable_after=60.0)
    config, log = record.answered(a_due(), SUB, HttpOutcome(410, None, 3.0))
    assert config[0] == TOPICS.config and attempted(log).outcome == "disabled"
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
    config, log = record.answered(streak, other, HttpOutcome(500, None, 3.0))
    assert config[0] == TOPICS.config and "failing continuously" in (attempted(log).error or "")


def test_skips_and_deferrals() -> None:
    record, _ = recorder()
    [skipped] = record.skipped(a_due(), None)
    assert attempted(skipped).error == "subscription deleted"
    [deferred] = record.deferred(a_due())
    later = decode(deferred[1].headers, deferred[1].value, DeliveryDue).data
    assert deferred[0] == TOPICS.retry_tier(1) and later.attempt == 1 and later.due_at > NOW
