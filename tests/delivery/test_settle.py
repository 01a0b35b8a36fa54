"""The settle step against the real broker: acknowledged, refused, retried, a step that raised."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from services.delivery._codec import due_record
from services.delivery._commit import PartitionLedger
from services.delivery._settle import Settlement
from services.delivery._writer import RecordWriter
from shared.cloudevents import KafkaRecord, decode
from shared.deadletter import DeadLetters
from shared.kafka import create_producer
from shared.messages import DeliveryDue
from shared.topics import Topics
from testkit.kafka import read_topic, wait_until
from tests.delivery.topictools import a_due, create_topic, refuse_batches

OFFSET = 7


@asynccontextmanager
async def settlement(
    bootstrap: str, topics: Topics, request_timeout_ms: int = 30_000, **options: float
) -> AsyncIterator[Settlement]:
    async with (
        create_producer(bootstrap, request_timeout_ms=request_timeout_ms) as producer,
        RecordWriter(producer) as writer,
    ):
        dead_letters = DeadLetters(producer, topics.dlq, service="delivery")
        yield Settlement(writer, dead_letters, backoff=0.05, max_backoff=0.2, **options)


def taken(deliveries: int = 1) -> PartitionLedger:
    ledger = PartitionLedger()
    ledger.take(OFFSET, deliveries)
    return ledger


async def test_a_record_settles_once_all_its_writes_are_acknowledged(
    bootstrap: str, topics: Topics
) -> None:
    due = a_due()
    ledger = taken()
    async with settlement(bootstrap, topics) as settle:
        # Two writes to two topics, and once more with nothing to write.
        writes = [
            (topics.retry_tier(2), due_record(due, due.due_at)),
            (topics.delivery_attempts, due_record(due, due.due_at)),
        ]
        settle.settle(ledger, OFFSET, due, writes)
        assert ledger.unsettled == 1  # not before the broker has them
        await wait_until(lambda: ledger.unsettled == 0, timeout=10, message="settled")
        ledger.take(OFFSET + 1, 1)
        settle.settle(ledger, OFFSET + 1, due, [])
        assert ledger.unsettled == 0
    assert len(await read_topic(bootstrap, topics.retry_tier(2), min_count=1)) == 1
    assert len(await read_topic(bootstrap, topics.delivery_attempts, min_count=1)) == 1


async def test_a_refused_write_sends_its_delivery_to_the_dlq_with_the_cause_and_settles(
    bootstrap: str, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    await refuse_batches(bootstrap, topics.delivery_attempts)
    due = a_due()
    ledger = taken()
    async with settlement(bootstrap, topics) as settle:
        writes = [
            (topics.retry_tier(2), due_record(due, due.due_at)),
            (topics.delivery_attempts, due_record(due, due.due_at)),
        ]
        with caplog.at_level(logging.WARNING):
            settle.settle(ledger, OFFSET, due, writes)
            await wait_until(lambda: ledger.unsettled == 0, timeout=10, message="settled")
    [dead] = await read_topic(bootstrap, topics.dlq, min_count=1)
    assert dead.headers["hookline_error_code"] == b"write_refused"
    reason = dead.headers["hookline_error"].decode()
    assert topics.delivery_attempts in reason and "MessageSizeTooLargeError" in reason
    assert dead.headers["hookline_source_offset"] == str(OFFSET).encode()
    assert (
        decode(list(dead.headers.items()), dead.value, DeliveryDue).data.delivery_id == "dlv_test"
    )
    # The write the broker took is not written twice.
    assert len(await read_topic(bootstrap, topics.retry_tier(2), min_count=1)) == 1
    [refusal] = [r for r in caplog.records if "refused" in r.getMessage()]
    assert "MessageSizeTooLargeError" in refusal.error  # type: ignore[attr-defined]


async def test_a_retriable_failure_is_retried_with_its_cause_logged_until_it_is_taken(
    bootstrap: str, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    missing = f"{topics.prefix}not-yet"
    due = a_due()
    ledger = taken()
    async with settlement(bootstrap, topics, request_timeout_ms=500) as settle:
        with caplog.at_level(logging.WARNING):
            settle.settle(ledger, OFFSET, due, [(missing, due_record(due, due.due_at))])

            def retried() -> bool:
                return any("retrying" in r.getMessage() for r in caplog.records)

            await wait_until(retried, timeout=15, message="a retry logged")
            assert ledger.unsettled == 1
            await create_topic(bootstrap, missing)
            await wait_until(lambda: ledger.unsettled == 0, timeout=20, message="settled")
    [retry, *_] = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert "UnknownTopicOrPartitionError" in retry.error  # type: ignore[attr-defined]
    assert len(await read_topic(bootstrap, missing, min_count=1)) == 1
    assert await read_topic(bootstrap, topics.dlq) == []


async def test_a_topic_still_unknown_after_the_deadline_is_refused(
    bootstrap: str, topics: Topics
) -> None:
    due = a_due()
    ledger = taken()
    async with settlement(
        bootstrap, topics, request_timeout_ms=300, unknown_topic_deadline=0.5
    ) as settle:
        settle.settle(ledger, OFFSET, due, [(f"{topics.prefix}never", due_record(due, due.due_at))])
        await wait_until(lambda: ledger.unsettled == 0, timeout=15, message="settled")
    [dead] = await read_topic(bootstrap, topics.dlq, min_count=1)
    assert b"UnknownTopicOrPartitionError" in dead.headers["hookline_error"]


async def test_a_step_that_raised_sends_its_delivery_to_the_dlq_with_the_traceback_logged(
    bootstrap: str, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    due = a_due()
    ledger = taken()
    async with settlement(bootstrap, topics) as settle:
        try:
            raise RuntimeError("a bug in a step")
        except RuntimeError as exc:
            writes = settle.step_failed(due, exc)
        settle.settle(ledger, OFFSET, due, writes)
        await wait_until(lambda: ledger.unsettled == 0, timeout=10, message="settled")
    [dead] = await read_topic(bootstrap, topics.dlq, min_count=1)
    assert dead.headers["hookline_error_code"] == b"delivery_failed"
    assert b"a bug in a step" in dead.headers["hookline_error"]
    [logged] = [r for r in caplog.records if r.exc_info]
    assert logged.exc_info is not None and logged.exc_info[0] is RuntimeError


async def test_drain_cancels_what_is_still_retrying_and_leaves_it_unsettled(
    bootstrap: str, topics: Topics
) -> None:
    due = a_due()
    ledger = taken()
    async with settlement(bootstrap, topics, request_timeout_ms=300) as settle:
        settle.settle(
            ledger, OFFSET, due, [(f"{topics.prefix}absent", due_record(due, due.due_at))]
        )
        await asyncio.sleep(0)
        await settle.drain(time.monotonic())
    assert ledger.unsettled == 1


async def test_a_write_that_cannot_even_be_queued_is_refused_and_settles(
    bootstrap: str, topics: Topics
) -> None:
    due = a_due()
    ledger = taken()
    bad = due_record(due, due.due_at)
    unencodable = KafkaRecord(bad.key, bad.value, [("h", "not bytes")])  # type: ignore[list-item]
    async with settlement(bootstrap, topics) as settle:
        # A first write teaches the writer the topic's partitions: the next is queued at once.
        settle.settle(ledger, OFFSET, due, [(topics.delivery_attempts, bad)])
        await wait_until(lambda: ledger.unsettled == 0, timeout=10, message="settled")
        ledger.take(OFFSET + 1, 1)
        settle.settle(ledger, OFFSET + 1, due, [(topics.delivery_attempts, unencodable)])
        await wait_until(lambda: ledger.unsettled == 0, timeout=10, message="settled")
    [dead] = await read_topic(bootstrap, topics.dlq, min_count=1)
    assert dead.headers["hookline_error_code"] == b"write_refused"
