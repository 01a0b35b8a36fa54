"""Circuit breakers, failing streaks and the offset ledger: pure logic."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from services.delivery._commit import OffsetBook, PartitionLedger
from services.delivery._isolation import CircuitBreakers, FailingStreaks, Lanes
from testkit.kafka import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_then_lets_one_probe_through_after_cooldown() -> None:
    clock = Clock()
    breakers = CircuitBreakers(threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        breakers.record_failure("s")
    assert breakers.allow("s")
    breakers.record_failure("s")
    assert not breakers.allow("s")
    clock.now = 10.5
    assert breakers.allow("s")  # the probe
    assert not breakers.allow("s")  # only one
    breakers.record_failure("s")  # probe failed: open again
    clock.now = 15
    assert not breakers.allow("s")
    clock.now = 21
    assert breakers.allow("s")
    breakers.record_success("s")
    assert breakers.allow("s") and breakers.allow("s")
    assert breakers.allow("other")


def test_failing_streak_starts_at_the_earliest_failure_and_ends_on_success() -> None:
    streaks = FailingStreaks()
    assert streaks.record_failure("s", 100.0) == 100.0
    assert streaks.record_failure("s", 50.0) == 50.0  # a retry that began earlier
    assert streaks.record_failure("s", 200.0) == 50.0
    streaks.record_success("s")
    assert streaks.record_failure("s", 300.0) == 300.0


def test_ledger_commits_only_up_to_the_lowest_unsettled_record() -> None:
    ledger = PartitionLedger()
    assert ledger.committable() is None
    ledger.take(10, 2)
    ledger.take(11, 0)
    ledger.take(12, 1)
    assert ledger.committable() == 10 and ledger.unsettled == 2
    ledger.settle(12)
    assert ledger.committable() == 10
    ledger.settle(10)
    assert ledger.committable() == 10  # one of its two deliveries is still out
    ledger.settle(10)
    assert ledger.committable() == 13 and ledger.unsettled == 0


def test_book_reports_only_moved_offsets_and_forgets_revoked_partitions() -> None:
    tp = TopicPartition("t", 0)
    book = OffsetBook()
    book.assign([tp])
    ledger = book.ledger(tp)
    assert ledger is not None
    ledger.take(0, 0)
    assert book.to_commit() == {tp: 1}
    book.committed({tp: 1})
    assert book.to_commit() == {}
    book.revoke([tp])
    book.settle(tp, 0)
    assert book.to_commit() == {}


async def test_a_skipped_delivery_frees_its_lane_place_for_waiting_admission_at_once() -> None:
    lanes = Lanes(per_subscription=1, stall_after=30.0)
    assert await lanes.admit("s") and await lanes.admit("s")  # the queue (2 x cap) is full
    waiting = asyncio.create_task(lanes.admit("s"))
    await asyncio.sleep(0)
    assert not waiting.done()
    lanes.withdraw("s")  # the breaker is open: skipped without a request
    # Far less than stall_after: admission must not sit out its wait.
    assert await asyncio.wait_for(waiting, timeout=2.0)


async def request(lanes: Lanes, sub: str, until: asyncio.Event) -> bool:
    """One request on ``sub``'s lane, on the wire until ``until`` is set (the receiver's
    answer) or the lane gives it up; True when it was given up."""
    assert await lanes.admit(sub) and await lanes.acquire(sub)
    scope = asyncio.timeout(None)
    try:
        async with scope:
            lanes.sending(sub, scope)
            await until.wait()
    except TimeoutError:
        return True
    finally:
        lanes.sent(sub, scope)
        lanes.release(sub)
    return False


async def test_requests_a_stalled_lane_held_past_abandon_after_are_expired_and_others_are_not() -> (
    None
):
    lanes = Lanes(per_subscription=2, stall_after=0.05, abandon_after=0.1)
    never = asyncio.Event()

    # "hung" fills its cap (a stalled lane); "slow" has one request out (not stalled).
    tasks = [asyncio.create_task(request(lanes, s, never)) for s in ("hung", "hung", "slow")]

    def expired_hung() -> bool:
        lanes.abandon_overdue()
        return len([t for t in tasks[:2] if t.done()]) == 2

    await wait_until(expired_hung, timeout=5)
    assert tasks[0].result() and tasks[1].result()
    assert not tasks[2].done() and lanes.in_flight("slow") == 1 and lanes.in_flight("hung") == 0
    never.set()
    assert not await tasks[2]


async def test_a_lone_request_on_a_suspect_lane_is_given_up_but_not_on_a_healthy_one() -> None:
    # One request out of a cap of four: never a stalled lane by itself. A suspect one
    # (its breaker open: the request is the half-open probe) is given up all the same.
    lanes = Lanes(per_subscription=4, stall_after=0.05, abandon_after=0.1)
    never = asyncio.Event()
    tasks = {sub: asyncio.create_task(request(lanes, sub, never)) for sub in ("probe", "healthy")}

    def probe_given_up() -> bool:
        lanes.abandon_overdue(suspect=lambda sub: sub == "probe")
        return tasks["probe"].done()

    await wait_until(probe_given_up, timeout=5)
    assert tasks["probe"].result()
    assert not tasks["healthy"].done()
    never.set()
    assert not await tasks["healthy"]


async def test_a_lane_that_gave_requests_up_gives_a_lone_one_up_until_a_request_ends_by_itself() -> (
    None
):
    lanes = Lanes(per_subscription=2, stall_after=0.05, abandon_after=0.1)
    never, answer = asyncio.Event(), asyncio.Event()

    async def settle(*requests: asyncio.Task[bool]) -> list[bool]:
        def done() -> bool:
            lanes.abandon_overdue()
            return all(t.done() for t in requests)

        await wait_until(done, timeout=5)
        return [t.result() for t in requests]

    def start(until: asyncio.Event) -> asyncio.Task[bool]:
        return asyncio.create_task(request(lanes, "s", until))

    # The cap fills with hung requests: a stalled lane, both given up.
    assert await settle(start(never), start(never)) == [True, True]
    # The next request goes alone to the same receiver: the lane is not full, but it
    # is still the receiver that hung, so that request is given up as well.
    assert await settle(start(never)) == [True]
    # A request that ends by itself clears the suspicion: a lone slow one stays out.
    answer.set()
    assert await settle(start(answer)) == [False]
    answer.clear()
    slow = start(answer)
    await asyncio.sleep(0.3)  # well past abandon_after
    assert lanes.abandon_overdue() == []
    answer.set()
    assert not await slow


async def test_a_released_slot_goes_to_the_first_waiter_and_a_stalled_lane_defers_its_waiters() -> (
    None
):
    lanes = Lanes(per_subscription=1, stall_after=0.05)
    assert await lanes.admit("s") and await lanes.acquire("s")
    assert await lanes.admit("s")
    first = asyncio.create_task(lanes.acquire("s"))
    await asyncio.sleep(0)
    assert not first.done()
    lanes.release("s")
    assert await asyncio.wait_for(first, timeout=2.0)  # handed the slot, in order
    assert lanes.in_flight("s") == 1

    # The slot's request goes on the wire and hangs: the lane stalls.
    scope = asyncio.timeout(None)
    lanes.sending("s", scope)
    assert await lanes.admit("s")
    second = asyncio.create_task(lanes.acquire("s"))
    await asyncio.sleep(0.1)
    assert not second.done()
    lanes.wake_stalled()
    assert await asyncio.wait_for(second, timeout=2.0) is False  # deferred, not waiting on
    assert lanes.in_flight("s") == 1
