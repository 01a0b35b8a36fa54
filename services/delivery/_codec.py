"""The records the delivery service writes, encoded straight from plain values.

Every delivery writes at least one record (its attempt, or its hand-off to a
retry tier), so building them through pydantic (construct, dump, re-encode) was
a large share of the per-delivery cost. :class:`Due` is the service's own slotted
form of a ``DeliveryDue``; :func:`due_record` and :func:`attempt_record` give
byte-for-byte the JSON shape the pydantic models decode (a unit test holds them
to it), with CloudEvents binary-mode headers as :func:`shared.cloudevents.encode`
writes them.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from shared.cloudevents import CONTENT_TYPE, SPEC_VERSION, KafkaRecord
from shared.messages import DeliveryAttempted, DeliveryDue, DeliveryOutcome, SourceRecord

if TYPE_CHECKING:
    from services.delivery._holds import Ticket
    from services.delivery._tracing import DeliveryTrace

SOURCE = "/hookline/delivery"
_SOURCE_BYTES = SOURCE.encode()
_DUE_TYPE = DeliveryDue.ce_type.encode()
_ATTEMPT_TYPE = DeliveryAttempted.ce_type.encode()
# Event ids: unique per process start (random prefix) and within it (a counter); a
# ULID per record cost more than the rest of the header put together.
_ID_PREFIX = os.urandom(8).hex() + "-"
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery waiting for an attempt (the fields of ``DeliveryDue``)."""

    delivery_id: str
    message_id: str
    subscription_id: str
    event_type: str
    workflow_id: str | None
    source: tuple[str, int, int]  # topic, partition, offset
    body: str
    attempt: int
    due_at: datetime
    first_attempted_at: datetime
    # Set on a delivery the hold store answers for (ordered, or held and let go): where it
    # waits when it must wait again, and what its outcome releases. None on the plain path.
    ticket: Ticket | None = None
    # With tracing on: the span its attempts are children of, and the attempt before.
    trace: DeliveryTrace | None = None

    @classmethod
    def from_message(cls, due: DeliveryDue) -> Due:
        s = due.source
        return cls(
            due.delivery_id,
            due.message_id,
            due.subscription_id,
            due.event_type,
            due.workflow_id,
            (s.topic, s.partition, s.offset),
            due.body,
            due.attempt,
            due.due_at,
            due.first_attempted_at,
        )

    def to_message(self) -> DeliveryDue:
        topic, partition, offset = self.source
        return DeliveryDue(
            delivery_id=self.delivery_id,
            message_id=self.message_id,
            subscription_id=self.subscription_id,
            event_type=self.event_type,
            workflow_id=self.workflow_id,
            source=SourceRecord(topic=topic, partition=partition, offset=offset),
            body=self.body,
            attempt=self.attempt,
            due_at=self.due_at,
            first_attempted_at=self.first_attempted_at,
        )

    def later(self, due_at: datetime, *, attempt: int | None = None) -> Due:
        return replace(self, due_at=due_at, attempt=self.attempt if attempt is None else attempt)


@dataclass(frozen=True, slots=True)
class PinnedRecord(KafkaRecord):
    """A record for a partition of its own choosing rather than its key's."""

    partition: int = 0


def _about(due: Due) -> dict[str, Any]:
    """The fields naming a delivery, which its due and attempt records both carry."""
    topic, partition, offset = due.source
    return {
        "delivery_id": due.delivery_id,
        "message_id": due.message_id,
        "subscription_id": due.subscription_id,
        "event_type": due.event_type,
        "workflow_id": due.workflow_id,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "body": due.body,
        "attempt": due.attempt,
    }


def _headers(ce_type: bytes, now: datetime) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", f"{_ID_PREFIX}{next(_ids):x}".encode()),
        ("ce_source", _SOURCE_BYTES),
        ("ce_type", ce_type),
        ("ce_time", orjson.dumps(now, option=orjson.OPT_UTC_Z)[1:-1]),
        ("content-type", CONTENT_TYPE),
    ]


def due_record(due: Due, now: datetime) -> KafkaRecord:
    """The ``hookline.delivery.due`` record of ``due`` (keyed by subscription)."""
    value = _about(due)
    value["due_at"] = due.due_at
    value["first_attempted_at"] = due.first_attempted_at
    headers = _headers(_DUE_TYPE, now)
    if due.trace is not None:
        headers.extend(due.trace.headers())
    return KafkaRecord(
        due.subscription_id.encode(),
        orjson.dumps(value, option=orjson.OPT_UTC_Z),
        headers,
    )


def attempt_record(
    due: Due,
    outcome: DeliveryOutcome,
    now: datetime,
    *,
    status_code: int | None = None,
    error: str | None = None,
    latency_ms: float | None = None,
    excerpt: str | None = None,
    next_attempt_at: datetime | None = None,
    url: str | None = None,
) -> KafkaRecord:
    """The ``hookline.delivery.attempted`` record of one attempt of ``due``."""
    value = _about(due)
    value.update(
        outcome=outcome,
        status_code=status_code,
        error=error,
        latency_ms=latency_ms,
        response_excerpt=excerpt,
        next_attempt_at=next_attempt_at,
        attempted_at=now,
        url=url,
    )
    return KafkaRecord(
        due.subscription_id.encode(),
        orjson.dumps(value, option=orjson.OPT_UTC_Z),
        _headers(_ATTEMPT_TYPE, now),
    )
