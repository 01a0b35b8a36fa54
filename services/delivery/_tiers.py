"""Retry tiers in: a partition waits, held, until the delivery at its head is due.

Records of one tier share one gap, so they come due roughly in order; a record
that is not due yet is sought back to and its partition held until its time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import TopicPartition

from services.delivery._admit import Admission
from services.delivery._codec import Due
from services.delivery._commit import PartitionLedger
from services.delivery._source import RecordSource
from services.delivery._tracing import resumed
from shared import tracing
from shared.consumer import Record
from shared.deadletter import DeadLetters, decode_or_divert
from shared.messages import DeliveryDue


class RetryTier(RecordSource):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        group_id: str,
        max_unsettled: int,
        admission: Admission,
        dead_letters: DeadLetters,
        on_assignment: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(
            bootstrap,
            topic,
            name="tier-" + topic.rsplit(".", 1)[-1],
            group_id=group_id,
            max_unsettled=max_unsettled,
            admission=admission,
            dead_letters=dead_letters,
            on_assignment=on_assignment,
        )

    async def take(self, tp: TopicPartition, ledger: PartitionLedger, record: Record) -> bool:
        event = await decode_or_divert(record, (DeliveryDue,), self.dead_letters)
        if event is None:
            ledger.take(record.offset, 0)
            return True
        message = event.data
        assert isinstance(message, DeliveryDue)
        due = Due.from_message(message)
        if tracing.enabled:
            due = resumed(due, record.headers)
        wait = (due.due_at - datetime.now(UTC)).total_seconds()
        if wait > 0:
            self.runner.hold_until(tp, record.offset, time.monotonic() + wait)
            return False
        ledger.take(record.offset, 1)
        await self.admission.admit(ledger, record.offset, due)
        return True
