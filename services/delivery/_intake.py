"""Lifecycle events in: one record fans out to the subscriptions that want it.

Each (record, subscription) becomes a first attempt, due now, handed to the
admission step. Poison goes to the dlq and counts as settled; a record no
subscription wants is settled at once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import TopicPartition

from services.delivery._admit import Admission
from services.delivery._codec import Due
from services.delivery._commit import PartitionLedger
from services.delivery._signing import delivery_ids, render_body
from services.delivery._source import RecordSource
from services.delivery._tracing import traced_dues
from shared import tracing
from shared.config_view import ConfigView
from shared.consumer import Record
from shared.deadletter import DeadLetters, decode_or_divert
from shared.messages import LIFECYCLE_EVENTS, LifecycleEvent


class EventIntake(RecordSource):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        group_id: str,
        max_unsettled: int,
        view: ConfigView,
        admission: Admission,
        dead_letters: DeadLetters,
    ) -> None:
        super().__init__(
            bootstrap,
            topic,
            name="events",
            group_id=group_id,
            max_unsettled=max_unsettled,
            admission=admission,
            dead_letters=dead_letters,
        )
        self._view = view
        self._group = group_id

    async def take(self, tp: TopicPartition, ledger: PartitionLedger, record: Record) -> bool:
        event = await decode_or_divert(record, LIFECYCLE_EVENTS, self.dead_letters)
        if event is None:
            ledger.take(record.offset, 0)
            return True
        data = event.data
        assert isinstance(data, LifecycleEvent)
        subscriptions = self._view.subscriptions_for(event.type, data.workflow_id)
        if not subscriptions:
            ledger.take(record.offset, 0)
            return True
        source = (tp.topic, tp.partition, record.offset)
        body = render_body(data)
        now = datetime.now(UTC)
        dues = []
        for sub in subscriptions:
            dlv_id, msg_id = delivery_ids(*source, sub.id)
            dues.append(
                Due(dlv_id, msg_id, sub.id, event.type, data.workflow_id, source, body, 1, now, now)
            )
        if tracing.enabled:
            dues = traced_dues(dues, record, self._group, event.id, data)
        # Taken only once every delivery is built: a step that raised before this point
        # leaves nothing half-started, and its record goes to the dlq (see RecordSource).
        ledger.take(record.offset, len(dues))
        admit = self.admission.admit
        for due in dues:
            await admit(ledger, record.offset, due)
        return True
