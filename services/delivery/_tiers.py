"""Retry tiers in: a partition waits, paused, until the delivery at its head is due.

Records of one tier share one gap, so they come due roughly in order; a record
that is not due yet is sought back to and its partition paused until its time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from services.delivery._attempts import Deliverer
from services.delivery._codec import Due
from services.delivery._loop import ConsumerLoop
from services.delivery._offsets import PartitionLedger
from shared.deadletter import DeadLetters, decode_or_divert
from shared.messages import DeliveryDue


class RetryTier(ConsumerLoop):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        group_id: str,
        max_unsettled: int,
        deliverer: Deliverer,
        dead_letters: DeadLetters,
    ) -> None:
        super().__init__(
            bootstrap, topic, group_id=group_id, max_unsettled=max_unsettled, deliverer=deliverer
        )
        self.name = "tier-" + topic.rsplit(".", 1)[-1]
        self._dead_letters = dead_letters

    async def handle(self, tp: TopicPartition, ledger: PartitionLedger, record: Any) -> bool:
        event = await decode_or_divert(record, (DeliveryDue,), self._dead_letters)
        if event is None:
            ledger.take(record.offset, 0)
            return True
        message = event.data
        assert isinstance(message, DeliveryDue)
        due = Due.from_message(message)
        wait = (due.due_at - datetime.now(UTC)).total_seconds()
        if wait > 0:
            self.hold(tp, record.offset, time.monotonic() + wait)
            return False
        ledger.take(record.offset, 1)
        await self.start(ledger, record.offset, due)
        return True
