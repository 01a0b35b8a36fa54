"""The run ledger: which run ids have been started, kept in the compacted ``dispatcher-runs``.

Why co-partitioned: a changelog record is written to the *same partition
number* as the inbound record that started the run (the key stays the run id,
so compaction keeps one record per run). Inbound is keyed by webhook id, so
every redelivery of an event lands on the same inbound partition, and the
runs it may duplicate are all in that one changelog partition. On assignment
of inbound partition ``p`` the dispatcher therefore reads only changelog
partition ``p`` — memory and start-up time grow with the partitions a replica
owns, not with the whole history — and a partition's state moves with it in a
rebalance. Both topics must have the same partition count (checked at start).

Bounded: each entry carries when the run started; entries older than the
dedupe window (default 7 days, the inbound retention: no redelivery can still
be on ``inbound`` after it) are dropped on load, and tombstoned in a later
transaction so compaction removes them from the topic too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition

from shared.kafka import create_consumer

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class StartedRun:
    """One changelog entry: a run the dispatcher has started."""

    run_id: str
    webhook_id: str
    provider_event_id: str
    workflow_id: str
    started_at: float

    def value(self) -> bytes:
        return orjson.dumps(
            {
                "run_id": self.run_id,
                "webhook_id": self.webhook_id,
                "provider_event_id": self.provider_event_id,
                "workflow_id": self.workflow_id,
                "started_at": self.started_at,
            }
        )


class RunLedger:
    """Started run ids per inbound partition; pending additions until the transaction commits."""

    def __init__(
        self, bootstrap_servers: str, topic: str, *, window: float = DEFAULT_WINDOW
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._window = window
        self._started: dict[int, dict[str, float]] = {}
        self._pending: dict[int, dict[str, float]] = {}
        self._expired: dict[int, list[str]] = {}
        self._taken: dict[int, list[str]] = {}

    @property
    def topic(self) -> str:
        return self._topic

    def size(self) -> int:
        return sum(len(runs) for runs in self._started.values())

    def partitions(self) -> set[int]:
        return set(self._started)

    async def load(self, partitions: list[int], timeout: float = 60.0) -> None:
        """Read changelog ``partitions`` from the beginning to their committed end."""
        if not partitions:
            return
        loaded: dict[int, dict[str, float]] = {p: {} for p in partitions}
        consumer = create_consumer(self._bootstrap, group_id=None, client_id="hookline-ledger")
        await consumer.start()
        try:
            tps = [TopicPartition(self._topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            deadline = time.monotonic() + timeout
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"changelog {self._topic} not read within {timeout}s")
                batch = await consumer.getmany(*remaining, timeout_ms=200)
                for tp, records in batch.items():
                    runs = loaded[tp.partition]
                    for record in records:
                        key = record.key.decode(errors="replace") if record.key else ""
                        if record.value is None:
                            runs.pop(key, None)
                        else:
                            runs[key] = _started_at(record.value)
                for tp in list(remaining):
                    # Positions also move past transaction markers and aborted records.
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        horizon = time.time() - self._window
        for partition, runs in loaded.items():
            old = [run_id for run_id, at in runs.items() if at < horizon]
            for run_id in old:
                del runs[run_id]
            if old:
                self._expired.setdefault(partition, []).extend(old)
            self._started[partition] = runs
        log.info(
            "run ledger loaded",
            extra={
                "partitions": sorted(partitions),
                "runs": self.size(),
                "expired": sum(len(v) for v in self._expired.values()),
            },
        )

    def forget(self, partitions: list[int]) -> None:
        for partition in partitions:
            self._started.pop(partition, None)
            self._pending.pop(partition, None)
            self._expired.pop(partition, None)

    def seen(self, partition: int, run_id: str) -> bool:
        return run_id in self._started.get(partition, {}) or run_id in self._pending.get(
            partition, {}
        )

    def add(self, partition: int, run: StartedRun) -> None:
        self._pending.setdefault(partition, {})[run.run_id] = run.started_at

    def expire(self, now: float | None = None) -> int:
        """Move entries older than the window to the tombstone list; returns how many."""
        horizon = (now if now is not None else time.time()) - self._window
        count = 0
        for partition, runs in self._started.items():
            old = [run_id for run_id, at in runs.items() if at < horizon]
            for run_id in old:
                del runs[run_id]
            if old:
                self._expired.setdefault(partition, []).extend(old)
                count += len(old)
        return count

    def take_expired(self) -> dict[int, list[str]]:
        """Run ids to tombstone in this transaction (given back by :meth:`rollback`)."""
        taken, self._expired = self._expired, {}
        self._taken = taken
        return taken

    def commit(self) -> None:
        for partition, runs in self._pending.items():
            self._started.setdefault(partition, {}).update(runs)
        self._pending = {}
        self._taken = {}

    def rollback(self) -> None:
        self._pending = {}
        for partition, run_ids in self._taken.items():
            self._expired.setdefault(partition, []).extend(run_ids)
        self._taken = {}


def _started_at(value: bytes) -> float:
    try:
        at = orjson.loads(value).get("started_at")
        return float(at) if isinstance(at, int | float) else time.time()
    except (orjson.JSONDecodeError, AttributeError):
        # An unreadable entry still marks the run as started: dedupe errs on "seen".
        return time.time()
