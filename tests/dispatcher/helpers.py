"""Helpers for the dispatcher's tests: inbound records, output counts, running components."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.dispatcher import Dispatcher
from shared.cloudevents import decode, decode_any, encode
from shared.config_view import ConfigView
from shared.kafka import create_producer
from shared.messages import LIFECYCLE_EVENTS, RunRequested, StatusChanged, WebhookReceived
from shared.topics import Topics
from testkit.kafka import Record, read_topic


def push_event(
    fixtures_dir: Path,
    *,
    webhook_id: str = "gh-main",
    delivery_id: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    event_type: str = "push",
) -> WebhookReceived:
    payload = json.loads((fixtures_dir / "github" / "push" / "payload.json").read_text())
    return WebhookReceived(
        webhook_id=webhook_id,
        provider="github",
        event_type=event_type,
        provider_event_id=delivery_id,
        received_at=datetime.now(UTC),
        source_ip="127.0.0.1",
        headers={"x-github-event": event_type.split(".")[0], "x-github-delivery": delivery_id},
        payload=payload,
    )


async def write_inbound(bootstrap: str, topics: Topics, *events: WebhookReceived) -> None:
    """Write events to ``inbound`` as the ingress does: keyed by webhook id."""
    async with create_producer(bootstrap) as producer:
        for event in events:
            rec = encode(event, key=event.webhook_id, source="/tests/ingress")
            await producer.send_and_wait(
                topics.inbound, rec.value, key=rec.key, headers=rec.headers
            )


async def write_raw(
    bootstrap: str,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
) -> None:
    async with create_producer(bootstrap) as producer:
        await producer.send_and_wait(topic, value, key=key, headers=headers)


def commands(records: list[Record]) -> list[RunRequested]:
    return [decode(list(r.headers.items()), r.value, RunRequested).data for r in records]


def lifecycle(records: list[Record]) -> list[Any]:
    return [
        decode_any(list(r.headers.items()), r.value, expect=LIFECYCLE_EVENTS).data for r in records
    ]


def queued_events(records: list[Record]) -> list[StatusChanged]:
    return [e for e in lifecycle(records) if isinstance(e, StatusChanged) and e.to == "queued"]


def run_counts(items: list[Any]) -> Counter[tuple[str, str]]:
    return Counter((i.run_id, i.workflow_id) for i in items)


async def outputs(
    bootstrap: str, topics: Topics, *, min_commands: int = 0, timeout: float = 15.0
) -> tuple[list[RunRequested], list[StatusChanged]]:
    """The committed commands and queued events now on the output topics."""
    cmd = commands(
        await read_topic(
            bootstrap, topics.workflow_commands, min_count=min_commands, timeout=timeout
        )
    )
    evt = queued_events(
        await read_topic(bootstrap, topics.workflow_events, min_count=min_commands, timeout=timeout)
    )
    return cmd, evt


@contextlib.asynccontextmanager
async def running_dispatcher(
    bootstrap: str, topics: Topics, *, transactional_id: str | None = None, **options: Any
) -> AsyncIterator[Dispatcher]:
    async with ConfigView(bootstrap, topics.config) as view:
        await view.wait_ready()
        dispatcher = Dispatcher(
            bootstrap,
            topics,
            view,
            transactional_id=transactional_id
            or f"{topics.prefix}dispatcher-test-{uuid.uuid4().hex[:6]}",
            retry_backoff=0.2,
            **options,
        )
        async with dispatcher:
            yield dispatcher
