"""Circuit breakers, failing streaks and the offset ledger: pure logic."""

from __future__ import annotations

from aiokafka import TopicPartition

from services.delivery._isolation import CircuitBreakers, FailingStreaks
from services.delivery._offsets import OffsetBook, PartitionLedger


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_then_lets_one_probe_through_after_cooldown() -> None:
    clock = Clock()
    breakers = CircuitBreakers(threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        breakers.record_failure("s")
    assert breakers.allow("s")
    breakers.record_failure("s")
    assert not breakers.allow("s")
    clock.now = 10.5
    assert breakers.allow("s")  # the probe
    assert not breakers.allow("s")  # only one
    breakers.record_failure("s")  # probe failed: open again
    clock.now = 15
    assert not breakers.allow("s")
    clock.now = 21
    assert breakers.allow("s")
    breakers.record_success("s")
    assert breakers.allow("s") and breakers.allow("s")
    assert breakers.allow("other")


def test_failing_streak_starts_at_the_earliest_failure_and_ends_on_success() -> None:
    streaks = FailingStreaks()
    assert streaks.record_failure("s", 100.0) == 100.0
    assert streaks.record_failure("s", 50.0) == 50.0  # a retry that began earlier
    assert streaks.record_failure("s", 200.0) == 50.0
    streaks.record_success("s")
    assert streaks.record_failure("s", 300.0) == 300.0


def test_ledger_commits_only_up_to_the_lowest_unsettled_record() -> None:
    ledger = PartitionLedger()
    assert ledger.committable() is None
    ledger.take(10, 2)
    ledger.take(11, 0)
    ledger.take(12, 1)
    assert ledger.committable() == 10 and ledger.unsettled == 2
    ledger.settle(12)
    assert ledger.committable() == 10
    ledger.settle(10)
    assert ledger.committable() == 10  # one of its two deliveries is still out
    ledger.settle(10)
    assert ledger.committable() == 13 and ledger.unsettled == 0


def test_book_reports_only_moved_offsets_and_forgets_revoked_partitions() -> None:
    tp = TopicPartition("t", 0)
    book = OffsetBook()
    book.assign([tp])
    ledger = book.ledger(tp)
    assert ledger is not None
    ledger.take(0, 0)
    assert book.to_commit() == {tp: 1}
    book.committed({tp: 1})
    assert book.to_commit() == {}
    book.revoke([tp])
    book.settle(tp, 0)
    assert book.to_commit() == {}
