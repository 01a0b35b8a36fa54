"""Which offsets may be committed: the lowest record whose deliveries are not all settled.

A record is *settled* when each of its deliveries was sent, or durably handed to
a retry tier or the dlq. Only unsettled records are held in memory (a dict in
offset order), so the per-partition bound on them bounds memory as well.
"""

from __future__ import annotations

from aiokafka import TopicPartition


class PartitionLedger:
    """Unsettled records of one partition, and the next offset after the last one taken."""

    __slots__ = ("next_offset", "pending")

    def __init__(self) -> None:
        self.pending: dict[int, int] = {}
        self.next_offset: int | None = None

    def take(self, offset: int, deliveries: int) -> None:
        """Record ``offset`` as taken, with ``deliveries`` still to settle (0: settled now)."""
        if deliveries > 0:
            self.pending[offset] = deliveries
        self.next_offset = offset + 1

    def settle(self, offset: int) -> None:
        left = self.pending.get(offset)
        if left is None:
            return
        if left <= 1:
            del self.pending[offset]
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
