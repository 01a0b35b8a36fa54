"""The delivery log's memory stays bounded (no broker needed: attempts are added directly)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.admin.delivery_log import DeliveryLog
from shared.messages import DeliveryAttempted

T0 = datetime(2026, 11, 27, tzinfo=UTC)


def attempt(
    delivery: str, n: int, *, body: str | None = None, at: datetime = T0
) -> DeliveryAttempted:
    return DeliveryAttempted(
        delivery_id=delivery,
        message_id=f"msg_{delivery}",
        subscription_id="sub",
        event_type="workflow.completed",
        attempt=n,
        outcome="failed",
        attempted_at=at + timedelta(seconds=n),
        response_excerpt="x" * 4096,
        body=body,
    )


def test_the_oldest_deliveries_go_first_when_over_the_count_or_the_bytes():
    log = DeliveryLog("unused:9092", "unused", max_deliveries=3)
    for i in range(5):
        log.add(attempt(f"d{i}", 1))
    assert [d.delivery_id for d in log.query()] == ["d4", "d3", "d2"]
    log.add(attempt("d2", 2))  # attempted again: now the most recent
    log.add(attempt("d5", 1))
    assert log.get("d3") is None and log.get("d2") is not None

    small = DeliveryLog("unused:9092", "unused", max_bytes=50_000)
    for i in range(100):
        small.add(attempt(f"d{i}", 1, body="b" * 2000))
    assert small.size <= 50_000 and 5 <= len(small) < 100
    assert small.get("d99") is not None and small.get("d0") is None


def test_attempts_per_delivery_and_bodies_are_bounded():
    log = DeliveryLog("unused:9092", "unused", max_attempts=4)
    log.add(attempt("d", 1, body="first"))
    for n in range(2, 10):
        log.add(attempt("d", n, body="again" if n == 5 else None))
    record = log.get("d")
    assert record is not None
    assert [a.attempt for a in record.attempts] == [1, 7, 8, 9], "the first and the latest"
    assert record.body == "again", "the latest body, though its attempt was dropped"
    assert all(a.body is None for a in record.attempts), "kept once, on the delivery"


def test_a_naive_time_is_taken_as_utc():
    log = DeliveryLog("unused:9092", "unused")
    log.add(attempt("a", 1, at=datetime(2026, 11, 27)))
    log.add(attempt("b", 1))
    assert [d.delivery_id for d in log.query()] == ["b", "a"]
    assert all(d.last_attempt_at.tzinfo is not None for d in log.query())
