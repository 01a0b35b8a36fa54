"""What goes on the wire: the webhook-id, the body, and the Standard Webhooks signature headers.

The webhook-id is a pure function of where the event was read and who it is for,
so every attempt, restart and rebalance produces the same id and receivers can
deduplicate on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from shared import __version__
from shared.messages import LifecycleEvent, SourceRecord

USER_AGENT = f"hookline/{__version__}"
_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


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


def render_body(event: LifecycleEvent) -> str:
    """The JSON body subscribers receive: ``{type, timestamp, data}``."""
    data: dict[str, Any] = event.model_dump(mode="json", by_alias=True)
    return orjson.dumps(
        {"type": event.ce_type, "timestamp": data["occurred_at"], "data": data}
    ).decode()


@lru_cache(maxsize=4096)
def _keyed_mac(secret: str) -> Any:
    # An HMAC already keyed: copying it skips the key schedule on every signature.
    return hmac.new(signing_key(secret), digestmod="sha256")


@lru_cache(maxsize=4096)
def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decodes; anything else is used as it is."""
    if secret.startswith(_SECRET_PREFIX):
        encoded = secret[len(_SECRET_PREFIX) :]
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def sign(msg_id: str, timestamp: int, body: str | bytes, secret: str) -> str:
    """One ``v1,<base64>`` signature of ``id.timestamp.body``."""
    payload = body.encode() if isinstance(body, str) else body
    mac = _keyed_mac(secret).copy()
    mac.update(f"{msg_id}.{timestamp}.".encode())
    mac.update(payload)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_headers(
    msg_id: str, body: str | bytes, secrets: list[str], now: datetime
) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per active secret (rotation)."""
    timestamp = int(now.timestamp())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secrets:
        headers["webhook-signature"] = " ".join(sign(msg_id, timestamp, body, s) for s in secrets)
    return headers
