"""Commit: which offsets may be committed, and which records have waited too long to settle.

A record is *settled* when each of its deliveries was sent, or durably handed to
a retry tier or the dlq. Offsets are committed only up to the lowest unsettled
record. Only unsettled records are held in memory (dicts in offset order), so the
per-partition bound on them bounds memory as well. Each notes when it was taken:
a record unsettled for longer than ``max_unsettled_age`` makes the service not
ready, naming the partition (:meth:`OffsetBook.overdue`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiokafka import TopicPartition

if TYPE_CHECKING:
    from services.delivery._holds import HoldPartition


class Origin(Protocol):
    """What a delivery settles through once its outcome is durable: its record's ledger,
    or a hold-store ticket (which settles the record it came with, if any)."""

    def settle(self, offset: int) -> None: ...


class PartitionLedger:
    """Unsettled records of one partition, and the next offset after the last one taken."""

    __slots__ = ("holds", "next_offset", "pending", "taken_at")

    def __init__(self) -> None:
        self.pending: dict[int, int] = {}
        self.taken_at: dict[int, float] = {}
        self.next_offset: int | None = None
        # The held deliveries of this partition (the intake's partitions only).
        self.holds: HoldPartition | None = None

    def restoring(self) -> bool:
        """Whether this partition's held deliveries are still being read back."""
        return self.holds is None or not self.holds.ready

    def take(self, offset: int, deliveries: int) -> None:
        """Record ``offset`` as taken, with ``deliveries`` still to settle (0: settled now)."""
        if deliveries > 0:
            self.pending[offset] = deliveries
            self.taken_at[offset] = time.monotonic()
        self.next_offset = offset + 1

    def settle(self, offset: int) -> None:
        left = self.pending.get(offset)
        if left is None:
            return
        if left <= 1:
            del self.pending[offset]
            del self.taken_at[offset]
        else:
            self.pending[offset] = left - 1

    @property
    def unsettled(self) -> int:
        return len(self.pending)

    def committable(self) -> int | None:
        """The offset to commit (the next record to read after a restart), if any."""
        for offset in self.pending:  # insertion order is offset order
            return offset
        return self.next_offset

    def oldest(self) -> tuple[int, float] | None:
        """The lowest unsettled offset and when it was taken (monotonic), if any."""
        for offset, taken in self.taken_at.items():
            return offset, taken
        return None


@dataclass(frozen=True, slots=True)
class Overdue:
    """A partition whose lowest unsettled record has waited longer than allowed."""

    tp: TopicPartition
    offset: int
    age: float

    def __str__(self) -> str:
        return (
            f"{self.tp.topic}/{self.tp.partition} has held offset {self.offset} "
            f"unsettled for {self.age:.0f} s"
        )


class OffsetBook:
    """Ledgers for the partitions a consumer owns right now."""

    def __init__(self) -> None:
        self._ledgers: dict[TopicPartition, PartitionLedger] = {}
        self._committed: dict[TopicPartition, int] = {}

    def assign(self, tps: set[TopicPartition] | list[TopicPartition]) -> None:
        for tp in tps:
            self._ledgers.setdefault(tp, PartitionLedger())

    def revoke(self, tps: set[TopicPartition] | list[TopicPartition]) -> None:
        for tp in tps:
            self._ledgers.pop(tp, None)
            self._committed.pop(tp, None)

    @property
    def owned(self) -> int:
        """How many partitions are this consumer's now."""
        return len(self._ledgers)

    def ledger(self, tp: TopicPartition) -> PartitionLedger | None:
        return self._ledgers.get(tp)

    def settle(self, tp: TopicPartition, offset: int) -> None:
        ledger = self._ledgers.get(tp)
        if ledger is not None:  # a settle after revocation changes nothing
            ledger.settle(offset)

    def to_commit(self, tps: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Offsets that moved since the last :meth:`committed` call."""
        out: dict[TopicPartition, int] = {}
        for tp, ledger in self._ledgers.items():
            if tps is not None and tp not in tps:
                continue
            offset = ledger.committable()
            if offset is not None and offset != self._committed.get(tp):
                out[tp] = offset
        return out

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def unsettled(self) -> dict[TopicPartition, int]:
        return {tp: ledger.unsettled for tp, ledger in self._ledgers.items()}

    def overdue(self, max_age: float, now: float | None = None) -> list[Overdue]:
        """Partitions whose lowest unsettled record was taken more than ``max_age`` ago."""
        now = time.monotonic() if now is None else now
        out: list[Overdue] = []
        for tp, ledger in self._ledgers.items():
            oldest = ledger.oldest()
            if oldest is not None and now - oldest[1] > max_age:
                out.append(Overdue(tp, oldest[0], now - oldest[1]))
        return out
