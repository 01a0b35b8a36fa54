"""The delivery attempt records the service wrote, read back from their topic."""

from __future__ import annotations

from shared.cloudevents import decode
from shared.messages import DeliveryAttempted
from shared.topics import Topics
from testkit.kafka import read_topic


async def attempts(bootstrap: str, topics: Topics, min_count: int = 0) -> list[DeliveryAttempted]:
    records = await read_topic(bootstrap, topics.delivery_attempts, min_count=min_count, timeout=10)
    out = []
    for r in records:
        data = decode(list(r.headers.items()), r.value, DeliveryAttempted).data
        out.append(data)
    return out
