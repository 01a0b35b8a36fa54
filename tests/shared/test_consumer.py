"""The consumer runner against the real broker: hand-over, commits, holds, failure, stop."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition

from shared.consumer import Batch, ConsumerHooks, ConsumerRunner
from shared.kafka import create_producer
from shared.topics import Topics
from testkit.kafka import wait_committed, wait_until


async def _produce(bootstrap: str, topic: str, count: int, partition: int = 0) -> None:
    async with create_producer(bootstrap) as producer:
        for n in range(count):
            await producer.send(topic, str(n).encode(), partition=partition)
        await producer.flush()


class Collect(ConsumerHooks):
    """Keeps what it is handed, in order; commits up to what it took."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []  # (partition, offset)
        self.taken: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.assigned_tps: set[TopicPartition] = set()
        self.drained_at: float | None = None

    async def handle(self, batch: Batch) -> None:
        for tp, records in batch.items():
            for record in records:
                self.seen.append((tp.partition, record.offset))
                self.taken[tp] = record.offset + 1

    async def assigned(self, tps: set[TopicPartition]) -> None:
        self.assigned_tps |= tps

    def committable(self, tps: set[TopicPartition] | None) -> dict[TopicPartition, int]:
        return {tp: o for tp, o in self.taken.items() if tps is None or tp in tps}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    async def drain(self, deadline: float) -> None:
        self.drained_at = time.monotonic()


async def test_a_group_runner_hands_every_record_over_and_commits_what_the_hooks_name(
    bootstrap: str, topics: Topics
) -> None:
    topic, group = topics.dlq, f"{topics.prefix}runner"
    await _produce(bootstrap, topic, 30)
    hooks = Collect()
    async with ConsumerRunner(
        bootstrap, hooks, client_id="t", topics=[topic], group_id=group, commit_interval=0.2
    ) as runner:
        await asyncio.wait_for(runner.joined.wait(), 20)
        await wait_until(lambda: len(hooks.seen) == 30, timeout=15, message="every record")
        # About every commit_interval, without being asked.
        await wait_committed(bootstrap, group, topic, 30, timeout=10)
        assert runner.running
    assert [offset for _, offset in hooks.seen] == list(range(30))
    assert hooks.drained_at is not None  # leaving the block drains, then commits
    assert {tp.topic for tp in hooks.assigned_tps} == {topic}


async def test_an_assigned_runner_reads_from_the_beginning_without_a_group(
    bootstrap: str, topics: Topics
) -> None:
    await _produce(bootstrap, topics.dlq, 5, partition=1)
    hooks = Collect()
    tps = [TopicPartition(topics.dlq, p) for p in range(3)]
    async with ConsumerRunner(bootstrap, hooks, client_id="t", partitions=tps) as runner:
        assert hooks.assigned_tps == set(tps) and runner.joined.is_set()
        await wait_until(lambda: len(hooks.seen) == 5, timeout=10, message="every record")
    assert hooks.seen == [(1, n) for n in range(5)]
    assert hooks.commits == []  # nothing to commit without a group


class HoldFirst(Collect):
    """Holds its partition at the first record it sees, once, by time or by condition."""

    def __init__(self, runner_box: list[ConsumerRunner], *, seconds: float = 0.0) -> None:
        super().__init__()
        self._box = runner_box
        self._seconds = seconds
        self.held = False
        self.blocked = True
        self.held_at = 0.0

    async def handle(self, batch: Batch) -> None:
        runner = self._box[0]
        for tp, records in batch.items():
            for record in records:
                if not self.held:
                    self.held, self.held_at = True, time.monotonic()
                    if self._seconds:
                        runner.hold_until(tp, record.offset, time.monotonic() + self._seconds)
                    else:
                        runner.hold_while(tp, record.offset, lambda: self.blocked)
                    assert runner.held(tp)
                    break
                self.seen.append((tp.partition, record.offset))


async def _held_runner(
    bootstrap: str, topic: str, hooks: HoldFirst, box: list[ConsumerRunner]
) -> ConsumerRunner:
    runner = ConsumerRunner(
        bootstrap, hooks, client_id="t", partitions=[TopicPartition(topic, 0)], poll_timeout=0.05
    )
    box.append(runner)
    return runner


async def test_hold_until_pauses_a_partition_and_resumes_it_at_its_record_when_due(
    bootstrap: str, topics: Topics
) -> None:
    await _produce(bootstrap, topics.dlq, 3)
    box: list[ConsumerRunner] = []
    hooks = HoldFirst(box, seconds=0.6)
    async with await _held_runner(bootstrap, topics.dlq, hooks, box):
        await wait_until(lambda: len(hooks.seen) == 3, timeout=10, message="after the hold")
        resumed = time.monotonic()
    assert hooks.seen == [(0, 0), (0, 1), (0, 2)]  # the held record comes again first
    assert resumed - hooks.held_at >= 0.6


async def test_hold_while_resumes_once_its_condition_clears(bootstrap: str, topics: Topics) -> None:
    await _produce(bootstrap, topics.dlq, 3)
    box: list[ConsumerRunner] = []
    hooks = HoldFirst(box)
    async with await _held_runner(bootstrap, topics.dlq, hooks, box):
        await wait_until(lambda: hooks.held, timeout=10, message="held")
        await asyncio.sleep(0.3)  # rounds go by while it is held
        assert hooks.seen == []
        hooks.blocked = False
        await wait_until(lambda: len(hooks.seen) == 3, timeout=10, message="released")


class Fails(Collect):
    async def handle(self, batch: Batch) -> None:
        if batch:
            raise RuntimeError("a bug")


async def test_a_handle_that_raises_ends_the_run_with_its_failure_logged(
    bootstrap: str, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    await _produce(bootstrap, topics.dlq, 1)
    hooks = Fails()
    tps = [TopicPartition(topics.dlq, 0)]
    async with ConsumerRunner(bootstrap, hooks, client_id="t", partitions=tps) as runner:
        await wait_until(lambda: not runner.running, timeout=10, message="stopped")
        assert isinstance(runner.failure, RuntimeError)
    assert any(r.exc_info and "failure" in r.getMessage() for r in caplog.records)


class Slow(Collect):
    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = False

    async def handle(self, batch: Batch) -> None:
        if batch:
            self.entered.set()
            await self.release.wait()
            await super().handle(batch)
            self.finished = True


async def test_stop_lets_the_round_in_hand_finish_and_drain_commits_it(
    bootstrap: str, topics: Topics
) -> None:
    topic, group = topics.dlq, f"{topics.prefix}stopping"
    await _produce(bootstrap, topic, 4)
    hooks = Slow()
    async with ConsumerRunner(
        bootstrap, hooks, client_id="t", topics=[topic], group_id=group, commit_interval=60
    ) as runner:
        await asyncio.wait_for(hooks.entered.wait(), 20)
        stopping = asyncio.create_task(runner.stop())
        await asyncio.sleep(0.2)
        assert not stopping.done()  # the round in hand is not cut short
        hooks.release.set()
        await asyncio.wait_for(stopping, 5)
        assert hooks.finished and not runner.running and runner.failure is None
        await runner.drain(1.0)
    await wait_committed(bootstrap, group, topic, len(hooks.seen), timeout=10)


def test_a_runner_is_given_topics_with_a_group_or_partitions_without_one() -> None:
    with pytest.raises(ValueError):
        ConsumerRunner("x:1", Collect(), client_id="t", topics=["a"])
    with pytest.raises(ValueError):
        ConsumerRunner(
            "x:1", Collect(), client_id="t", partitions=[TopicPartition("a", 0)], group_id="g"
        )


def test_log_every_tells_the_first_and_then_one_per_interval_with_the_count_left_out() -> None:
    from shared.logging import LogEvery

    now = [0.0]
    limiter = LogEvery(10.0, clock=lambda: now[0])
    assert limiter.due() == 0
    assert limiter.due() is None and limiter.due() is None
    now[0] = 10.5
    assert limiter.due() == 2
    assert limiter.due() is None
