"""What goes on the wire: the webhook-id, the body, and the Standard Webhooks signature headers.

The webhook-id is a pure function of where the event was read and who it is for,
so every attempt, restart and rebalance produces the same id and receivers can
deduplicate on it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from shared import __version__
from shared.messages import DeliverableEvent, SourceRecord
from shared.standard_webhooks import sign

USER_AGENT = f"hookline/{__version__}"


def _digest(topic: str, partition: int, offset: int, subscription_id: str) -> str:
    # NUL separators: no topic/subscription pair can be spelled two ways.
    material = f"{topic}\x00{partition}\x00{offset}\x00{subscription_id}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def message_id(source: SourceRecord, subscription_id: str) -> str:
    """The ``webhook-id``: stable for one (source record, subscription)."""
    return "msg_" + _digest(source.topic, source.partition, source.offset, subscription_id)


def delivery_id(source: SourceRecord, subscription_id: str) -> str:
    """The delivery log's id for one (source record, subscription)."""
    return "dlv_" + _digest(source.topic, source.partition, source.offset, subscription_id)


def delivery_ids(topic: str, partition: int, offset: int, subscription_id: str) -> tuple[str, str]:
    """``(delivery_id, message_id)`` of one (source record, subscription), from one digest."""
    digest = _digest(topic, partition, offset, subscription_id)
    return "dlv_" + digest, "msg_" + digest


def notice_ids(event_id: str, subscription_id: str) -> tuple[str, str]:
    """``(delivery_id, message_id)`` of an operational event's delivery: from its event id,
    which names what it tells (``subscription.disabled:<id>:<version>``…), so the same
    notice written twice (by two replicas) reaches a receiver with one webhook-id."""
    material = f"notice\x00{event_id}\x00{subscription_id}".encode()
    digest = hashlib.sha256(material).hexdigest()[:32]
    return "dlv_" + digest, "msg_" + digest


def render_body(event: DeliverableEvent) -> str:
    """The JSON body subscribers receive: ``{type, timestamp, data}``."""
    data: dict[str, Any] = event.model_dump(mode="json", by_alias=True)
    return orjson.dumps(
        {"type": event.ce_type, "timestamp": data["occurred_at"], "data": data}
    ).decode()


def signature_headers(
    msg_id: str, body: str | bytes, secrets: list[str], now: datetime
) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per active secret (rotation)."""
    timestamp = int(now.timestamp())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secrets:
        headers["webhook-signature"] = " ".join(sign(msg_id, timestamp, body, s) for s in secrets)
    return headers
