"""Lifecycle events in: one record fans out to the subscriptions that want it.

Each (record, subscription) becomes a first attempt, due now. Poison goes to
the dlq and counts as settled; a record no subscription wants is settled at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from services.delivery._attempts import Deliverer
from services.delivery._codec import Due
from services.delivery._loop import ConsumerLoop
from services.delivery._offsets import PartitionLedger
from services.delivery._signing import delivery_ids, render_body
from shared.config_view import ConfigView
from shared.deadletter import DeadLetters, decode_or_divert
from shared.messages import LIFECYCLE_EVENTS, LifecycleEvent


class EventIntake(ConsumerLoop):
    name = "events"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        group_id: str,
        max_unsettled: int,
        view: ConfigView,
        deliverer: Deliverer,
        dead_letters: DeadLetters,
    ) -> None:
        super().__init__(
            bootstrap, topic, group_id=group_id, max_unsettled=max_unsettled, deliverer=deliverer
        )
        self._view = view
        self._dead_letters = dead_letters

    async def handle(self, tp: TopicPartition, ledger: PartitionLedger, record: Any) -> bool:
        event = await decode_or_divert(record, LIFECYCLE_EVENTS, self._dead_letters)
        if event is None:
            ledger.take(record.offset, 0)
            return True
        data = event.data
        assert isinstance(data, LifecycleEvent)
        subscriptions = self._view.subscriptions_for(event.type, data.workflow_id)
        ledger.take(record.offset, len(subscriptions))
        if not subscriptions:
            return True
        source = (tp.topic, tp.partition, record.offset)
        body = render_body(data)
        now = datetime.now(UTC)
        for sub in subscriptions:
            dlv_id, msg_id = delivery_ids(*source, sub.id)
            due = Due(
                dlv_id,
                msg_id,
                sub.id,
                event.type,
                data.workflow_id,
                source,
                body,
                1,
                now,
                now,
            )
            await self.start(ledger, record.offset, due)
        return True
