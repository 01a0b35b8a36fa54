"""The commit step: offsets only up to the lowest unsettled record, and how long it waited."""

from __future__ import annotations

import time

from aiokafka import TopicPartition

from services.delivery._commit import OffsetBook, PartitionLedger


def test_the_oldest_unsettled_record_is_the_lowest_and_settling_it_moves_on() -> None:
    ledger = PartitionLedger()
    assert ledger.oldest() is None
    ledger.take(10, 2)
    ledger.take(11, 0)  # settled at once: never unsettled
    ledger.take(12, 1)
    first = ledger.oldest()
    assert first is not None and first[0] == 10
    ledger.settle(10)
    assert ledger.oldest() == first  # one of its two deliveries is still out
    ledger.settle(10)
    second = ledger.oldest()
    assert second is not None and second[0] == 12 and second[1] >= first[1]
    ledger.settle(12)
    assert ledger.oldest() is None and ledger.committable() == 13


def test_overdue_names_the_partitions_holding_a_record_longer_than_allowed() -> None:
    book = OffsetBook()
    slow, quick, idle = (TopicPartition("events", p) for p in range(3))
    book.assign([slow, quick, idle])
    slow_ledger, quick_ledger = book.ledger(slow), book.ledger(quick)
    assert slow_ledger is not None and quick_ledger is not None
    slow_ledger.take(40, 1)
    taken = time.monotonic()
    quick_ledger.take(7, 1)
    assert book.overdue(60.0, now=taken + 30) == []
    assert {o.tp for o in book.overdue(60.0, now=taken + 61)} == {slow, quick}
    quick_ledger.settle(7)
    [left] = book.overdue(60.0, now=taken + 61)
    assert left.tp == slow and left.offset == 40 and left.age >= 61
    assert str(left).startswith("events/0 has held offset 40 unsettled for 6")
    book.revoke([slow])
    assert book.overdue(60.0, now=taken + 61) == []
