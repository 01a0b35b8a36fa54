"""The dispatcher: inbound events → one run per matching binding, exactly once inside Kafka.

Per inbound record, inside the batch's transaction: the webhook's bindings
are matched; for each match whose run id the ledger has not seen, a
``RunRequested`` command (``workflow-commands``), a ``status.changed`` to
``queued`` (``workflow-events``) and a ledger entry (``dispatcher-runs``, on
the record's own partition number) are written. Poison goes to the dlq in
the same transaction. Lifecycle: see :class:`~._txloop.TransactionalLoop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Self

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram

from shared import tracing
from shared.cloudevents import KafkaRecord, decode, encode
from shared.config_view import ConfigView
from shared.entities import Webhook
from shared.errors import ConfigurationError, PoisonMessage
from shared.kafka import topic_partitions
from shared.messages import (
    RunRequested,
    RunTrigger,
    StatusChanged,
    WebhookReceived,
    inbound_event_id,
)
from shared.topics import Topics

from ._ledger import DEFAULT_WINDOW, RunLedger, StartedRun
from ._matching import RUN_NAMESPACE, matching_bindings, run_id_for
from ._tracing import annotate_inbound, run_extensions, start_run_request, traced_dispatch
from ._txloop import Outbox, TransactionalLoop

log = logging.getLogger(__name__)

SOURCE = "/hookline/dispatcher"

INBOUND = Counter("hookline_dispatcher_inbound_total", "inbound records processed", ["outcome"])
RUNS = Counter("hookline_dispatcher_runs_total", "runs requested", ["outcome"])
LAG = Histogram(
    "hookline_dispatcher_lag_seconds",
    "Time from an inbound record's write (its timestamp) to its dispatch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def _event_id(run_id: str, what: str) -> str:
    # Deterministic CloudEvents ids: a consumer can dedupe on ce_id as well as on run id.
    return str(uuid.uuid5(RUN_NAMESPACE, f"{run_id}/{what}"))


class Dispatcher(TransactionalLoop):
    """Consumes ``inbound``; writes commands, queued events and ledger entries transactionally."""

    service = "dispatcher"

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Topics,
        view: ConfigView,
        *,
        transactional_id: str,
        group_id: str | None = None,
        dedupe_window: float = DEFAULT_WINDOW,
        max_batch: int = 500,
        poll_timeout: float = 0.2,
        retry_backoff: float = 1.0,
        expire_every: float = 3600.0,
        unknown_webhook_wait: float = 2.0,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            topic=topics.inbound,
            dlq_topic=topics.dlq,
            group_id=group_id or f"{topics.prefix}dispatcher",
            transactional_id=transactional_id,
            max_batch=max_batch,
            poll_timeout=poll_timeout,
            retry_backoff=retry_backoff,
        )
        self._topics = topics
        self._view = view
        self._ledger = RunLedger(bootstrap_servers, topics.dispatcher_runs, window=dedupe_window)
        self._expire_every = expire_every
        self._next_expiry = time.monotonic() + expire_every
        self._unknown_wait = unknown_webhook_wait
        self._unknown_since: dict[str, float] = {}
        self._config_changed = asyncio.Event()
        self.unknown_webhook_waits = 0
        view.add_listener(self._on_config_change)

    def _on_config_change(self, key: str, entity: object) -> None:
        self._config_changed.set()

    async def _webhook(self, webhook_id: str) -> Webhook | None:
        """The webhook, waiting briefly when this view may lag behind the ingress's.

        The ingress accepts an event only for a webhook its own view holds, so a miss
        here is usually a webhook created a moment ago. The wait happens once per
        unknown id per minute, so a deleted webhook costs little.
        """
        found = self._view.webhook(webhook_id)
        if found is not None or self._unknown_wait <= 0:
            return found
        now = time.monotonic()
        missed = self._unknown_since.get(webhook_id)
        if missed is not None and now - missed < 60.0:
            return None
        deadline = now + self._unknown_wait
        self.unknown_webhook_waits += 1
        while True:
            self._config_changed.clear()  # before the lookup, so no change slips between
            found = self._view.webhook(webhook_id)
            left = deadline - time.monotonic()
            if found is not None or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._config_changed.wait(), left)
        if found is None:
            self._unknown_since[webhook_id] = time.monotonic()
            if len(self._unknown_since) > 10_000:
                self._unknown_since.clear()
        else:
            self._unknown_since.pop(webhook_id, None)
        return found

    @property
    def ledger(self) -> RunLedger:
        return self._ledger

    async def __aenter__(self) -> Self:
        inbound = await topic_partitions(self._bootstrap, self._topics.inbound)
        runs = await topic_partitions(self._bootstrap, self._topics.dispatcher_runs)
        if not inbound or inbound != runs:
            raise ConfigurationError(
                f"{self._topics.dispatcher_runs} must have the same partitions as "
                f"{self._topics.inbound} (have {len(runs)} and {len(inbound)}); "
                "run `hookline topics`"
            )
        await super().__aenter__()
        return self

    async def partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        new = sorted(
            tp.partition for tp in assigned if tp.partition not in self._ledger.partitions()
        )
        await self._ledger.load(new)

    async def partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._ledger.forget([tp.partition for tp in revoked])

    def committed(self) -> None:
        self._ledger.commit()

    def aborted(self) -> None:
        self._ledger.rollback()

    async def process(
        self, outbox: Outbox, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        if time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + self._expire_every
            self._ledger.expire()
        for partition, run_ids in self._ledger.take_expired().items():
            for run_id in run_ids:
                await outbox.send(
                    self._ledger.topic, KafkaRecord(run_id.encode(), None), partition=partition
                )
        for tp, records in batch.items():
            for record in records:
                if tracing.enabled:
                    await traced_dispatch(self._dispatch, outbox, record, self._group_id)
                    continue
                await self._dispatch(outbox, tp.partition, record)

    async def _dispatch(
        self, outbox: Outbox, partition: int, record: ConsumerRecord[bytes, bytes]
    ) -> None:
        LAG.observe(max(0.0, time.time() - record.timestamp / 1000))
        try:
            event = decode(record.headers, record.value, WebhookReceived).data
        except PoisonMessage as exc:
            INBOUND.labels("poison").inc()
            await outbox.dead_letter(record, exc)
            return
        webhook = await self._webhook(event.webhook_id)
        if webhook is None:
            INBOUND.labels("unknown_webhook").inc()
            log.warning(
                "inbound event for an unknown webhook; nothing to start",
                extra={
                    "webhook_id": event.webhook_id,
                    "provider_event_id": event.provider_event_id,
                },
            )
            return
        if tracing.enabled:
            annotate_inbound(event)
        matched = matching_bindings(webhook.bindings, event)
        INBOUND.labels("matched" if matched else "unmatched").inc()
        now = datetime.now(UTC)
        replay_id = event.replay.id if event.replay is not None else None
        trigger = RunTrigger(
            webhook_id=event.webhook_id,
            inbound_event_id=inbound_event_id(partition, record.offset),
            provider_event_id=event.provider_event_id,
            replay_id=replay_id,
        )
        for binding in matched:
            run_id = run_id_for(
                event.webhook_id, event.provider_event_id, binding.workflow_id, replay_id
            )
            if self._ledger.seen(partition, run_id):
                RUNS.labels("duplicate").inc()
                log.info(
                    "redelivered event; run already started",
                    extra={
                        "run_id": run_id,
                        "webhook_id": event.webhook_id,
                        "provider_event_id": event.provider_event_id,
                        "replay_id": replay_id,
                    },
                )
                continue
            command = RunRequested(
                run_id=run_id,
                workflow_id=binding.workflow_id,
                webhook_id=event.webhook_id,
                provider_event_id=event.provider_event_id,
                event_type=event.event_type,
                requested_at=now,
                input=event,
                trigger=trigger,
            )
            queued = StatusChanged(
                workflow_id=binding.workflow_id,
                run_id=run_id,
                occurred_at=now,
                to="queued",
                trigger=trigger,
            )
            span = trace = None
            if tracing.enabled:
                span = start_run_request(
                    self._topics.workflow_commands, run_id, binding.workflow_id
                )
                trace = run_extensions(span)
            await outbox.send(
                self._topics.workflow_commands,
                encode(
                    command, key=run_id, source=SOURCE, event_id=run_id, time=now, extensions=trace
                ),
            )
            await outbox.send(
                self._topics.workflow_events,
                encode(
                    queued,
                    key=run_id,
                    source=SOURCE,
                    event_id=_event_id(run_id, "queued"),
                    time=now,
                    extensions=trace,
                ),
            )
            if span is not None:
                span.end()
            started = StartedRun(
                run_id,
                event.webhook_id,
                event.provider_event_id,
                binding.workflow_id,
                now.timestamp(),
            )
            await outbox.send(
                self._ledger.topic,
                KafkaRecord(
                    run_id.encode(), started.value(), [("content-type", b"application/json")]
                ),
                partition=partition,
            )
            self._ledger.add(partition, started)
            RUNS.labels("requested").inc()
            log.info(
                "run requested",
                extra={
                    "run_id": run_id,
                    "workflow_id": binding.workflow_id,
                    "webhook_id": event.webhook_id,
                    "event_type": event.event_type,
                    "replay_id": replay_id,
                },
            )
