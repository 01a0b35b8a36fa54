"""The dead-letter helper: a record no service can use goes to ``dlq`` with its reason.

The original key, value and headers are kept byte for byte; hookline adds
``hookline_error`` (the reason), ``hookline_error_code``, and where it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from shared.cloudevents import Event, decode_any
from shared.errors import PoisonMessage
from shared.messages import Message

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes | None]]

DEAD_LETTERS = Counter(
    "hookline_dead_letters_total",
    "Records written to the dead-letter topic, by service and error code (a transaction "
    "that aborts and is retried counts its dead letters again)",
    ["service", "code"],
)


class DeadLetters:
    """Sends poison to the dead-letter topic with a producer the caller owns."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, *, service: str) -> None:
        self._producer = producer
        self._topic = topic
        self._service = service

    @property
    def topic(self) -> str:
        return self._topic

    def record_headers(
        self,
        *,
        headers: Headers | None,
        reason: str,
        code: str,
        source_topic: str,
        partition: int,
        offset: int,
    ) -> list[tuple[str, bytes]]:
        DEAD_LETTERS.labels(self._service, code).inc()
        kept = [
            (k, v) for k, v in (headers or ()) if v is not None and not k.startswith("hookline_")
        ]
        return [
            *kept,
            ("hookline_error", reason.encode()[:2000]),
            ("hookline_error_code", code.encode()),
            ("hookline_source_topic", source_topic.encode()),
            ("hookline_source_partition", str(partition).encode()),
            ("hookline_source_offset", str(offset).encode()),
            ("hookline_service", self._service.encode()),
        ]

    async def send(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        error: PoisonMessage | str,
        source_topic: str,
        partition: int,
        offset: int,
    ) -> None:
        """Write the record to the dead-letter topic and wait for the acknowledgement."""
        reason = error.reason if isinstance(error, PoisonMessage) else error
        code = error.reason_code if isinstance(error, PoisonMessage) else "error"
        log.warning(
            "record sent to dead-letter topic",
            extra={
                "reason": reason,
                "code": code,
                "source_topic": source_topic,
                "partition": partition,
                "offset": offset,
            },
        )
        await self._producer.send_and_wait(
            self._topic,
            value=value,
            key=key,
            headers=self.record_headers(
                headers=headers,
                reason=reason,
                code=code,
                source_topic=source_topic,
                partition=partition,
                offset=offset,
            ),
        )


async def decode_or_divert(
    record: object,
    expect: Sequence[type[Message]],
    dead_letters: DeadLetters,
) -> Event[Message] | None:
    """Decode a consumed record as one of ``expect``; poison goes to the dlq and gives None."""
    headers = getattr(record, "headers", None)
    value = getattr(record, "value", None)
    try:
        return decode_any(headers, value, expect=expect)
    except PoisonMessage as exc:
        await dead_letters.send(
            key=getattr(record, "key", None),
            value=value,
            headers=headers,
            error=exc,
            source_topic=getattr(record, "topic", ""),
            partition=getattr(record, "partition", -1),
            offset=getattr(record, "offset", -1),
        )
        return None
