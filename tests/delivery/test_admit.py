"""The admission step with real parts (broker, config view, HTTP receiver): the breaker is
asked once per delivery with a slot in hand, and nothing leaves a record unsettled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from services.delivery._admit import Admission
from services.delivery._attempt import Attempts
from services.delivery._commit import PartitionLedger
from services.delivery._guard import DestinationGuard
from services.delivery._isolation import CircuitBreakers, FailingStreaks, Lanes
from services.delivery._record import Recorder, Write
from services.delivery._schedule import RetryPolicy
from services.delivery._sender import HttpOutcome, Sender
from services.delivery._settle import Settlement
from services.delivery._writer import RecordWriter
from shared.config_view import ConfigView
from shared.crypto import SecretBox
from shared.deadletter import DeadLetters
from shared.entities import Subscription
from shared.kafka import create_producer
from shared.topics import Topics
from testkit import TEST_SECRET_KEY
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_until
from testkit.receivers import Receiver
from tests.delivery.topictools import a_due


class CountingBreakers(CircuitBreakers):
    """Counts each time the breaker is asked, and how many slots the lane held then."""

    def __init__(self, lanes: Lanes) -> None:
        super().__init__(threshold=2, cooldown=60.0)
        self.lanes = lanes
        self.asked: list[int] = []

    def allow(self, subscription_id: str) -> bool:
        self.asked.append(self.lanes.in_flight(subscription_id))
        return super().allow(subscription_id)


class FailingRecorder(Recorder):
    def answered(self, due: object, sub: Subscription, result: HttpOutcome) -> list[Write]:
        raise RuntimeError("a bug in the record step")


@dataclass
class Pipeline:
    admission: Admission
    breakers: CountingBreakers
    lanes: Lanes


@asynccontextmanager
async def pipeline(
    bootstrap: str, topics: Topics, recorder: type[Recorder] = Recorder
) -> AsyncIterator[Pipeline]:
    async with AsyncExitStack() as stack:
        producer = await stack.enter_async_context(create_producer(bootstrap))
        writer = await stack.enter_async_context(RecordWriter(producer))
        view = await stack.enter_async_context(
            ConfigView(bootstrap, topics.config, secret_box=SecretBox(TEST_SECRET_KEY))
        )
        await view.wait_ready()
        guard = DestinationGuard(allow_private=True, allow_insecure=True)
        sender = await stack.enter_async_context(Sender(guard))
        lanes = Lanes(2, stall_after=5.0)
        breakers = CountingBreakers(lanes)
        attempts = await stack.enter_async_context(
            Attempts(
                view=view,
                sender=sender,
                lanes=lanes,
                breakers=breakers,
                max_in_flight=8,
                stall_after=5.0,
                abandon_after=5.0,
            )
        )
        dead_letters = DeadLetters(producer, topics.dlq, service="delivery")
        settlement = Settlement(writer, dead_letters)
        admission = Admission(
            view=view,
            lanes=lanes,
            breakers=breakers,
            attempts=attempts,
            recorder=recorder(
                topics=topics,
                dead_letters=dead_letters,
                policy=RetryPolicy((0.2, 0.4), jitter=0.0),
                breakers=breakers,
                streaks=FailingStreaks(),
                disable_after_failing_for=3600.0,
            ),
            settlement=settlement,
        )
        yield Pipeline(admission, breakers, lanes)


async def test_the_breaker_is_asked_once_per_delivery_with_a_slot_in_hand(
    bootstrap: str, topics: Topics
) -> None:
    deliveries = 6
    async with Receiver() as receiver:
        receiver.script("/hook", [500] * 100)
        await put_entities(bootstrap, topics.config, subscription("sub", url=receiver.url()))
        async with pipeline(bootstrap, topics) as parts:
            ledger = PartitionLedger()
            for offset in range(deliveries):
                ledger.take(offset, 1)
                await parts.admission.admit(ledger, offset, a_due(offset=offset))
            await wait_until(lambda: ledger.unsettled == 0, timeout=15, message="all settled")
            assert parts.lanes.in_flight("sub") == 0
    assert len(parts.breakers.asked) == deliveries
    assert all(held >= 1 for held in parts.breakers.asked)
    # Two failures opened it: the deliveries after them went on without a request.
    assert 2 <= len(receiver.requests) < deliveries


async def test_a_hand_on_past_an_open_breaker_takes_no_task_and_no_request(
    bootstrap: str, topics: Topics
) -> None:
    async with Receiver() as receiver:
        await put_entities(bootstrap, topics.config, subscription("sub", url=receiver.url()))
        async with pipeline(bootstrap, topics) as parts:
            parts.breakers.record_failure("sub")
            parts.breakers.record_failure("sub")
            ledger = PartitionLedger()
            ledger.take(3, 1)
            await parts.admission.admit(ledger, 3, a_due(offset=3))
            assert parts.admission._tasks == {}
            await wait_until(lambda: ledger.unsettled == 0, timeout=10, message="settled")
            assert parts.lanes.in_flight("sub") == 0
        [tier] = await read_topic(bootstrap, topics.retry_tier(2), min_count=1)
    assert receiver.requests == []
    assert await read_topic(bootstrap, topics.delivery_attempts) == []
    assert tier.key == b"sub"


async def test_a_deleted_subscription_settles_with_a_skipped_record(
    bootstrap: str, topics: Topics
) -> None:
    async with pipeline(bootstrap, topics) as parts:
        ledger = PartitionLedger()
        ledger.take(1, 1)
        await parts.admission.admit(ledger, 1, a_due(offset=1, subscription_id="gone"))
        await wait_until(lambda: ledger.unsettled == 0, timeout=10, message="settled")
    [record] = await read_topic(bootstrap, topics.delivery_attempts, min_count=1)
    assert b'"outcome":"skipped"' in (record.value or b"")


async def test_a_step_that_raises_dead_letters_the_delivery_and_settles_its_record(
    bootstrap: str, topics: Topics
) -> None:
    async with Receiver() as receiver:
        await put_entities(bootstrap, topics.config, subscription("sub", url=receiver.url()))
        async with pipeline(bootstrap, topics, recorder=FailingRecorder) as parts:
            ledger = PartitionLedger()
            ledger.take(9, 1)
            await parts.admission.admit(ledger, 9, a_due(offset=9))
            await wait_until(lambda: ledger.unsettled == 0, timeout=10, message="settled")
            assert parts.lanes.in_flight("sub") == 0
        [dead] = await read_topic(bootstrap, topics.dlq, min_count=1)
    assert len(receiver.requests) == 1
    assert dead.headers["hookline_error_code"] == b"delivery_failed"
    assert b"a bug in the record step" in dead.headers["hookline_error"]
