"""Engine adapters, and the local engine that runs workflow definitions itself.

``kafka`` (default): the dispatcher's commands on ``workflow-commands`` are the
whole interface; an external engine consumes them and reports lifecycle events
on ``workflow-events`` itself. Nothing runs here.

``local``: :class:`LocalEngine` consumes the commands (its own group) and runs
each workflow's nodes in order. Exactly once per command, for what it writes:
a consumed batch of commands is one transaction holding every event of every
run in it, and the batch's offsets. A crash mid-run aborts the transaction, so
no event of that run is visible; the run is executed again after restart (its
``http`` side effects may therefore repeat — at-least-once outside Kafka).
The price: a run's events become visible together when its batch commits;
batches are small (``max_batch``) and a run's time is bounded (``run_timeout``)
so transactions stay well inside the transaction timeout.

Per run id, in order: ``status.changed`` queued→running, ``workflow.started``,
one ``node.completed`` per node, ``workflow.completed``, ``status.changed``
running→succeeded. A failing node: ``error.occurred`` (with its node id),
``workflow.failed``, ``status.changed`` running→failed. An unknown workflow:
``error.occurred``, ``workflow.failed``, ``status.changed`` queued→failed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from shared import tracing
from shared.cloudevents import KafkaRecord, decode, encode
from shared.config_view import ConfigView
from shared.errors import NodeFailed, PoisonMessage
from shared.messages import (
    ErrorInfo,
    ErrorOccurred,
    LifecycleEvent,
    NodeCompleted,
    RunRequested,
    RunStatus,
    StatusChanged,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)
from shared.topics import Topics
from shared.tracing import propagation

from ._matching import RUN_NAMESPACE
from ._nodes import NodePolicy, NodeRunner, node_http_client
from ._tracing import traced_node, traced_run
from ._txloop import Outbox, TransactionalLoop

log = logging.getLogger(__name__)

SOURCE = "/hookline/engine/local"
RUNS = Counter("hookline_engine_runs_total", "local engine runs finished", ["outcome"])


class KafkaEngine:
    """The ``kafka`` adapter: commands on the topic are the interface; nothing to run."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def stop(self) -> None:
        return None

    @property
    def running(self) -> bool:
        return True

    @property
    def failure(self) -> BaseException | None:
        return None


class _Run:
    """One run's events, in order, each with a deterministic CloudEvents id."""

    def __init__(self, command: RunRequested) -> None:
        self.command = command
        self.records: list[KafkaRecord] = []
        # Made inside the run's span (with tracing on): every event of the run continues it.
        self.trace = propagation.current_extensions() if tracing.enabled else None

    def emit(self, event: LifecycleEvent, what: str) -> None:
        run_id = self.command.run_id
        if self.command.trigger is not None:
            # Every event of the run names its cause, as the queued one did.
            event = event.model_copy(update={"trigger": self.command.trigger})
        event_id = str(uuid.uuid5(RUN_NAMESPACE, f"{run_id}/engine/{what}"))
        self.records.append(
            encode(
                event,
                key=run_id,
                source=SOURCE,
                event_id=event_id,
                time=event.occurred_at,
                extensions=self.trace,
            )
        )

    def status(self, from_: RunStatus | None, to: RunStatus) -> None:
        self.emit(
            StatusChanged(
                workflow_id=self.command.workflow_id,
                run_id=self.command.run_id,
                occurred_at=datetime.now(UTC),
                from_=from_,
                to=to,
            ),
            f"status/{to}",
        )

    def failed(self, code: str, message: str, node_id: str | None, from_: RunStatus) -> None:
        now = datetime.now(UTC)
        error = ErrorInfo(code=code, message=message[:2000])
        ids = {
            "workflow_id": self.command.workflow_id,
            "run_id": self.command.run_id,
            "occurred_at": now,
        }
        self.emit(ErrorOccurred(**ids, error=error, node_id=node_id), "error")
        self.emit(WorkflowFailed(**ids, error=error), "failed")
        self.status(from_, "failed")


class LocalEngine(TransactionalLoop):
    """Consumes ``workflow-commands`` and runs each workflow from the config view."""

    service = "engine"

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Topics,
        view: ConfigView,
        *,
        transactional_id: str,
        group_id: str | None = None,
        policy: NodePolicy | None = None,
        max_batch: int = 16,
        max_concurrent_runs: int = 8,
        run_timeout: float = 40.0,
        poll_timeout: float = 0.2,
        retry_backoff: float = 1.0,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            topic=topics.workflow_commands,
            dlq_topic=topics.dlq,
            group_id=group_id or f"{topics.prefix}engine",
            transactional_id=transactional_id,
            max_batch=max_batch,
            poll_timeout=poll_timeout,
            retry_backoff=retry_backoff,
            # A batch may hold max_batch runs of up to run_timeout each, run in parallel waves.
            transaction_timeout=max(60.0, run_timeout * 3),
        )
        self._topics = topics
        self._view = view
        self._policy = policy or NodePolicy()
        self._run_timeout = run_timeout
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._client = node_http_client(self._policy)
        try:
            await super().__aenter__()
        except BaseException:
            await self._client.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await super().__aexit__(et, e, tb)
        finally:
            if self._client is not None:
                await self._client.aclose()

    async def process(
        self, outbox: Outbox, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        commands: list[tuple[RunRequested, ConsumerRecord[bytes, bytes]]] = []
        for records in batch.values():
            for record in records:
                try:
                    commands.append(
                        (decode(record.headers, record.value, RunRequested).data, record)
                    )
                except PoisonMessage as exc:
                    await outbox.dead_letter(record, exc)
        runs = await asyncio.gather(
            *(
                traced_run(self._execute, c, r, self._group_id)
                if tracing.enabled
                else self._execute(c)
                for c, r in commands
            )
        )
        for run in runs:
            for rec in run.records:
                await outbox.send(self._topics.workflow_events, rec)

    async def _execute(self, command: RunRequested) -> _Run:
        run = _Run(command)
        async with self._slots:
            workflow = self._view.workflow(command.workflow_id)
            if workflow is None:
                log.warning(
                    "command for an unknown workflow",
                    extra={"run_id": command.run_id, "workflow_id": command.workflow_id},
                )
                run.failed(
                    "unknown_workflow",
                    f"workflow {command.workflow_id!r} is not defined",
                    None,
                    "queued",
                )
                RUNS.labels("unknown_workflow").inc()
                return run
            ids: dict[str, Any] = {"workflow_id": command.workflow_id, "run_id": command.run_id}
            run.status("queued", "running")
            run.emit(WorkflowStarted(**ids, occurred_at=datetime.now(UTC)), "started")
            runner = NodeRunner(self._client_or_fail(), self._policy)
            current: str | None = None
            try:
                async with asyncio.timeout(self._run_timeout):
                    for node in workflow.nodes:
                        current = node.id
                        output = await (
                            traced_node(runner, node, command)
                            if tracing.enabled
                            else runner.run(node, command)
                        )
                        run.emit(
                            NodeCompleted(
                                **ids, occurred_at=datetime.now(UTC), node_id=node.id, output=output
                            ),
                            f"node/{node.id}",
                        )
            except NodeFailed as exc:
                log.info(
                    "workflow failed",
                    extra={"run_id": command.run_id, "node_id": current, "code": exc.code},
                )
                run.failed(exc.code, exc.message, current, "running")
                RUNS.labels("failed").inc()
                return run
            except TimeoutError:
                run.failed("timeout", f"run exceeded {self._run_timeout}s", current, "running")
                RUNS.labels("timeout").inc()
                return run
            except Exception as exc:  # a bug in a node must fail its run, not stall the engine
                log.exception(
                    "node raised unexpectedly", extra={"run_id": command.run_id, "node_id": current}
                )
                run.failed("internal_error", type(exc).__name__, current, "running")
                RUNS.labels("failed").inc()
                return run
            run.emit(
                WorkflowCompleted(
                    **ids, occurred_at=datetime.now(UTC), output={"nodes": len(workflow.nodes)}
                ),
                "completed",
            )
            run.status("running", "succeeded")
            RUNS.labels("succeeded").inc()
            return run

    def _client_or_fail(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("engine not started")
        return self._client
