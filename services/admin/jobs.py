"""Jobs that read a range of a topic: replays (``inbound``) and recoveries (``workflow-events``).

A job's state is an :class:`~shared.messages.OperationState` on the ``operations``
topic, keyed ``<kind>/<id>``: written when it starts, every couple of seconds as
it goes (``positions``: per partition, the next offset to read; its counts), and
when it ends. The admin view keeps the latest per key, so ``GET /v1/replays/{id}``
answers from any replica, and a request id that exists already answers that job
instead of starting another (idempotent per request id).

A job's range is fixed when it starts: from the offsets for ``since``
(``offsets_for_times``) to those for ``until``, or to the end offsets at that
moment. So it covers whatever the topic still holds, whatever its age.

Lifecycle: ``async with JobRunner(...)`` resumes the jobs the view shows running
that are this replica's own (a restart) or whose state has not moved for
``lease`` seconds (their replica died), from their last saved positions; what
they do again between that save and the stop is harmless by construction
(replayed records are deterministic and the dispatcher dedupes their runs; a
recovery's re-sends keep their webhook-ids). Leaving the context cancels the
running jobs; their state stays ``running`` on the topic, to be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from shared.cloudevents import KafkaRecord, encode
from shared.kafka import create_consumer, topic_partitions
from shared.messages import OperationState

from .context import SOURCE, AdminContext, unavailable
from .listing import dict_rows

log = logging.getLogger("hookline.admin.jobs")

Records = Sequence[ConsumerRecord[bytes, bytes]]
Handle = Callable[[OperationState, Records], Awaitable[None]]

SAVE_EVERY = 2.0
LEASE = 30.0


def key_of(kind: str, job_id: str) -> str:
    return f"{kind}/{job_id}"


async def load(ctx: AdminContext, kind: str, job_id: str) -> OperationState | None:
    """The job's latest state, as the view holds it."""
    rows = await ctx.view_db.read(
        lambda c: dict_rows(c, "SELECT state FROM operations WHERE key = ?", [key_of(kind, job_id)])
    )
    return OperationState.model_validate_json(rows[0]["state"]) if rows else None


async def save(ctx: AdminContext, state: OperationState) -> OperationState:
    """Write ``state`` to ``operations`` and wait until this replica's view holds it."""
    state = state.model_copy(update={"updated_at": datetime.now(UTC)})
    key = key_of(state.kind, state.id)
    meta = await ctx.publish(ctx.topics.operations, encode(state, key=key, source=SOURCE))
    try:
        await ctx.materializer.wait_for(ctx.topics.operations, meta.partition, meta.offset)
    except TimeoutError as exc:
        raise unavailable("the job's state was written but is not yet visible here") from exc
    return state


async def window(
    ctx: AdminContext, topic: str, since: datetime, until: datetime | None
) -> tuple[dict[str, int], dict[str, int]]:
    """Per partition: the first offset at ``since`` and the offset to stop at."""
    bootstrap = ctx.settings.kafka_bootstrap_servers
    tps = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
    consumer = create_consumer(bootstrap, group_id=None, client_id="hookline-admin-jobs")
    try:
        await consumer.start()
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: _ms(since) for tp in tps})
        stops = dict(ends)
        if until is not None:
            at_until = await consumer.offsets_for_times({tp: _ms(until) for tp in tps})
            stops = {tp: (at_until[tp].offset if at_until[tp] else ends[tp]) for tp in tps}
    except (KafkaError, TimeoutError) as exc:
        raise unavailable("Kafka did not say where the window starts in time") from exc
    finally:
        await consumer.stop()
    positions = {str(tp.partition): (starts[tp].offset if starts[tp] else ends[tp]) for tp in tps}
    return positions, {str(tp.partition): stops[tp] for tp in tps}


async def publish_many(ctx: AdminContext, topic: str, records: Sequence[KafkaRecord]) -> None:
    """Send ``records`` and wait for every acknowledgement; 503 when Kafka is too slow."""
    if not records:
        return
    try:
        async with asyncio.timeout(ctx.settings.publish_timeout):
            futures = [
                await ctx.producer.send(topic, r.value, key=r.key, headers=r.headers)
                for r in records
            ]
            await asyncio.gather(*futures)
    except (TimeoutError, KafkaError) as exc:
        raise unavailable("Kafka did not acknowledge the writes in time") from exc


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class JobRunner:
    """Runs jobs in background tasks; resumes the running ones it should own."""

    def __init__(
        self, ctx: AdminContext, handlers: Mapping[str, Handle], *, lease: float = LEASE
    ) -> None:
        self._ctx = ctx
        self._handlers = handlers
        self._lease = lease
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.owner = ctx.replica

    async def __aenter__(self) -> Self:
        horizon = int((time.time() - self._lease) * 1_000_000)
        rows = await self._ctx.view_db.read(
            lambda c: dict_rows(c, "SELECT state FROM operations WHERE status = 'running'", [])
        )
        for row in rows:
            state = OperationState.model_validate_json(row["state"])
            stale = int(state.updated_at.timestamp() * 1_000_000) < horizon
            if state.kind in self._handlers and (state.owner == self.owner or stale):
                log.info("resuming a job", extra={"kind": state.kind, "id": state.id})
                self.start(state.model_copy(update={"owner": self.owner}))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def start(self, state: OperationState) -> asyncio.Task[None]:
        key = key_of(state.kind, state.id)
        running = self._tasks.get(key)
        if running is not None and not running.done():
            return running
        task = asyncio.create_task(self._run(state), name=f"job-{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))
        return task

    async def wait(self, kind: str, job_id: str, timeout: float) -> None:
        """Wait up to ``timeout`` for the job to end here (returns early if it is not here)."""
        task = self._tasks.get(key_of(kind, job_id))
        if task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout)

    async def _run(self, state: OperationState) -> None:
        handle = self._handlers[state.kind]
        try:
            state = await self._scan(state, handle)
            state = state.model_copy(update={"status": "completed"})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a job that fails says so in its state; the API goes on
            log.exception("job failed", extra={"kind": state.kind, "id": state.id})
            state = state.model_copy(update={"status": "failed", "error": repr(exc)[:500]})
        for _ in range(5):
            try:
                await save(self._ctx, state)
                break
            except Exception:  # the end state must land; Kafka may be briefly away
                await asyncio.sleep(1.0)
        log.info("job ended", extra={"kind": state.kind, "id": state.id, "status": state.status})

    async def _scan(self, state: OperationState, handle: Handle) -> OperationState:
        assert state.topic is not None
        bootstrap = self._ctx.settings.kafka_bootstrap_servers
        todo = {
            TopicPartition(state.topic, int(p)): at
            for p, at in state.positions.items()
            if at < state.ends.get(p, 0)
        }
        if not todo:
            return state
        consumer = create_consumer(bootstrap, group_id=None, client_id="hookline-admin-jobs")
        await consumer.start()
        try:
            consumer.assign(list(todo))
            for tp, at in todo.items():
                consumer.seek(tp, at)
            saved = time.monotonic()
            while todo:
                try:
                    fetched = await consumer.getmany(*todo, timeout_ms=500, max_records=500)
                except KafkaError as exc:
                    log.warning("job poll failed; retrying", extra={"error": repr(exc)})
                    await asyncio.sleep(0.5)
                    continue
                positions = dict(state.positions)
                for tp in list(todo):
                    end = state.ends[str(tp.partition)]
                    records = [r for r in fetched.get(tp, []) if r.offset < end]
                    if records:
                        await handle(state, records)
                    position = await consumer.position(tp)
                    positions[str(tp.partition)] = min(position, end)
                    if position >= end:
                        del todo[tp]
                state = state.model_copy(update={"positions": positions})
                if todo and time.monotonic() - saved > SAVE_EVERY:
                    state = await save(self._ctx, state)
                    saved = time.monotonic()
        finally:
            await consumer.stop()
        return state


def bump(state: OperationState, **counts: int) -> None:
    """Add to a job's counts in place (the state object is the job's own until saved)."""
    for name, n in counts.items():
        state.counts[name] = state.counts.get(name, 0) + n


def same_request(state: OperationState, wanted: dict[str, Any]) -> bool:
    return all(getattr(state, k) == v for k, v in wanted.items())
