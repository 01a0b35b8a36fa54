"""CloudEvents 1.0 over Kafka, binary mode: attributes as ``ce_*`` headers, data as JSON.

:func:`encode` turns a message model into the key, value and headers of a Kafka
record; :func:`decode` validates a consumed record back into its model, raising
a :class:`~shared.errors.PoisonMessage` subclass when it cannot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from pydantic import ValidationError
from ulid import ULID

from shared.entities import ENTITY_TYPES
from shared.errors import InvalidPayload, MissingHeader, UnknownEventType
from shared.messages import TOPIC_MESSAGES, Message

SPEC_VERSION = b"1.0"
CONTENT_TYPE = b"application/json"
REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type")
# The extension attributes hookline documents, optional on every message: the CloudEvents
# distributed-tracing extension (W3C Trace Context of the span that produced the event),
# in binary mode the ``ce_traceparent`` and ``ce_tracestate`` headers. Listed in each
# exported JSON Schema under ``x-ce-extensions``.
EXTENSIONS: dict[str, str] = {
    "traceparent": "W3C Trace Context traceparent of the span that produced the event "
    "(header ce_traceparent); the consumer continues the trace from it",
    "tracestate": "W3C Trace Context tracestate that goes with traceparent (header ce_tracestate)",
}

MESSAGE_TYPES: dict[str, type[Message]] = {
    m.ce_type: m for m in (*TOPIC_MESSAGES, *ENTITY_TYPES.values())
}

M = TypeVar("M", bound=Message)
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What a producer sends: key, value and headers, all bytes."""

    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Event(Generic[M]):
    """A decoded CloudEvent: its attributes and its validated data."""

    id: str
    source: str
    type: str
    time: datetime | None
    data: M
    extensions: Mapping[str, str] = field(default_factory=dict)


def new_event_id() -> str:
    return str(ULID())


def _dumps(message: Message) -> bytes:
    return orjson.dumps(message.model_dump(mode="json", by_alias=True, exclude_none=False))


def encode(
    message: Message,
    *,
    key: str | bytes | None,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    extensions: Mapping[str, str] | None = None,
) -> KafkaRecord:
    """The Kafka record of ``message`` in CloudEvents binary mode."""
    when = (time or datetime.now(UTC)).astimezone(UTC)
    headers: Headers = [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", (event_id or new_event_id()).encode()),
        ("ce_source", source.encode()),
        ("ce_type", message.ce_type.encode()),
        ("ce_time", when.isoformat().replace("+00:00", "Z").encode()),
        ("content-type", CONTENT_TYPE),
    ]
    for name, value in (extensions or {}).items():
        headers.append((f"ce_{name}", value.encode()))
    key_bytes = key.encode() if isinstance(key, str) else key
    return KafkaRecord(key=key_bytes, value=_dumps(message), headers=headers)


def header_map(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Headers as a dict (the last one wins), with ``None`` values dropped."""
    return {k: v for k, v in (headers or ()) if v is not None}


def decode_any(
    headers: Sequence[tuple[str, bytes | None]] | None,
    value: bytes | None,
    *,
    expect: Iterable[type[Message]] | None = None,
) -> Event[Message]:
    """Validate a record as any known message (or one of ``expect``)."""
    attrs = header_map(headers)
    for name in REQUIRED:
        if name not in attrs:
            raise MissingHeader(f"missing header {name}")
    try:
        ce_type = attrs["ce_type"].decode()
        ce_id = attrs["ce_id"].decode()
        ce_source = attrs["ce_source"].decode()
    except UnicodeDecodeError as exc:
        raise InvalidPayload("ce_* header is not UTF-8") from exc
    allowed = {m.ce_type: m for m in expect} if expect is not None else MESSAGE_TYPES
    model = allowed.get(ce_type)
    if model is None:
        raise UnknownEventType(f"unknown ce_type {ce_type!r}")
    if value is None:
        raise InvalidPayload("record has no value")
    try:
        data: Any = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"value is not JSON: {exc}") from exc
    try:
        message = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload(f"value fails {ce_type}: {_summarize(exc)}") from exc
    time = None
    if raw_time := attrs.get("ce_time"):
        try:
            time = datetime.fromisoformat(raw_time.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidPayload("ce_time is not RFC 3339") from exc
    extensions = {
        k[3:]: v.decode(errors="replace")
        for k, v in attrs.items()
        if k.startswith("ce_") and k not in (*REQUIRED, "ce_time")
    }
    return Event(ce_id, ce_source, ce_type, time, message, extensions)


def decode(
    headers: Sequence[tuple[str, bytes | None]] | None,
    value: bytes | None,
    model: type[M],
) -> Event[M]:
    """Validate a record as exactly ``model``."""
    event = decode_any(headers, value, expect=(model,))
    return event  # type: ignore[return-value]


def _summarize(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts[:5])
