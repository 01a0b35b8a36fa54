"""Events in: one record of ``workflow-events`` fans out to the subscriptions that want it.

Each (record, subscription) becomes a first attempt, due now, handed to the admission
step; a subscription with ``ordering: "run"`` gets it through its run's chain in the
hold store (:mod:`._holds`). Poison goes to the dlq and counts as settled; a record no
subscription wants is settled at once. A partition's records wait until its held
deliveries have been read back (:mod:`._holdbook`).

Operational events (``subscription.disabled``…) go only to subscriptions that name their
type (``*`` is for lifecycle events), never to the subscription they are about, and
their webhook-id comes from their event id (:func:`._signing.notice_ids`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import TopicPartition

from services.delivery._admit import Admission
from services.delivery._codec import Due
from services.delivery._commit import PartitionLedger
from services.delivery._holdbook import HoldBook
from services.delivery._signing import delivery_ids, notice_ids, render_body
from services.delivery._source import RecordSource
from services.delivery._tracing import traced_dues
from shared import tracing
from shared.cloudevents import Event
from shared.config_view import ConfigView
from shared.consumer import Record
from shared.deadletter import DeadLetters, decode_or_divert
from shared.entities import Subscription, event_pattern_matches
from shared.messages import DELIVERABLE_EVENTS, LifecycleEvent, Message, OperationalEvent


def due_for(
    event: Event[Message], source: tuple[str, int, int], subscription_id: str, body: str
) -> Due:
    """A first attempt of ``event`` (read at ``source``) to ``subscription_id``, due now."""
    data = event.data
    if isinstance(data, OperationalEvent):
        dlv_id, msg_id = notice_ids(event.id, subscription_id)
        workflow_id = None
    else:
        assert isinstance(data, LifecycleEvent)
        dlv_id, msg_id = delivery_ids(*source, subscription_id)
        workflow_id = data.workflow_id
    now = datetime.now(UTC)
    return Due(dlv_id, msg_id, subscription_id, event.type, workflow_id, source, body, 1, now, now)


def wanting(view: ConfigView, event: Event[Message]) -> list[Subscription]:
    """The subscriptions ``event`` goes to."""
    data = event.data
    if isinstance(data, OperationalEvent):
        return [
            s
            for s in view.subscriptions_for(event.type, None)
            if s.id != data.subscription_id
            and any(p != "*" and event_pattern_matches(p, event.type) for p in s.events)
        ]
    assert isinstance(data, LifecycleEvent)
    return view.subscriptions_for(event.type, data.workflow_id)


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
        holds: HoldBook,
        on_assignment: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(
            bootstrap,
            topic,
            name="events",
            group_id=group_id,
            max_unsettled=max_unsettled,
            admission=admission,
            dead_letters=dead_letters,
            on_assignment=on_assignment,
        )
        self._view = view
        self._holds = holds
        self._group = group_id

    async def take(self, tp: TopicPartition, ledger: PartitionLedger, record: Record) -> bool:
        held = ledger.holds
        if held is None or not held.ready:
            # Its held deliveries are being read back: nothing of it is taken before them.
            self.runner.hold_while(tp, record.offset, ledger.restoring)
            return False
        event = await decode_or_divert(record, DELIVERABLE_EVENTS, self.dead_letters)
        if event is None:
            ledger.take(record.offset, 0)
            return True
        data = event.data
        source = (tp.topic, tp.partition, record.offset)
        if isinstance(data, LifecycleEvent):
            subscriptions = self._view.subscriptions_for(event.type, data.workflow_id)
            if not subscriptions:
                ledger.take(record.offset, 0)
                return True
            body = render_body(data)
            now = datetime.now(UTC)
            dues = []
            for sub in subscriptions:
                dlv_id, msg_id = delivery_ids(*source, sub.id)
                dues.append(
                    Due(
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
                )
            if tracing.enabled:
                dues = traced_dues(dues, record, self._group, event.id, data)
        else:
            subscriptions = wanting(self._view, event)
            if not subscriptions:
                ledger.take(record.offset, 0)
                return True
            body = render_body(data)  # type: ignore[arg-type]
            dues = [due_for(event, source, sub.id, body) for sub in subscriptions]
        # Taken only once every delivery is built: a step that raised before this point
        # leaves nothing half-started, and its record goes to the dlq (see RecordSource).
        ledger.take(record.offset, len(dues))
        admit = self.admission.admit
        for sub, due in zip(subscriptions, dues, strict=True):
            if sub.ordering == "run" and isinstance(data, LifecycleEvent):
                await held.offer(ledger, record.offset, due, data.run_id)
            else:
                await admit(ledger, record.offset, due)
        return True

    async def assigned(self, tps: set[TopicPartition]) -> None:
        await super().assigned(tps)
        for tp in tps:
            ledger = self.book.ledger(tp)
            if ledger is not None:
                ledger.holds = self._holds.assign(tp)

    async def revoked(self, tps: set[TopicPartition]) -> None:
        self._holds.revoke(tps)
        await super().revoked(tps)
