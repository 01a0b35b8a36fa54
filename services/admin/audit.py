"""The audit trail: who changed what, written to the ``audit`` topic before the answer.

Every admin mutation and every operational action (redeliver, recover, replay,
dead-letter retry, secret rotation, enable and disable, rekey) is recorded as one
:class:`AuditEntry` with :meth:`AuditTrail.record`, which returns once Kafka has
acknowledged it (``acks=all``); only then is the request answered. So is a token
that was refused an action (403).

A request with no valid token (401) is recorded too, but through
:meth:`AuditTrail.record_refusal`, which never waits: such entries are queued
(at most ``max_pending``) and written in batches, acknowledged as the others, by a
background task. Past the bound, refusals are folded into one entry whose
``count`` says how many it stands for. A flood of bad tokens thus costs bounded
memory and a few writes, and never holds the API back; what is queued when the
process is killed is lost (a clean stop writes it).

An entry never holds a secret: the change is kept as ``change_digest``, the
SHA-256 of the canonical JSON of the request body with every secret (a
``secret``, each header value, any field named like a credential) replaced by a
fixed marker.

Lifecycle: ``async with AuditTrail(...)`` starts its producer and the refusal
writer; leaving it writes what is queued (for up to ``publish_timeout``) and
stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from prometheus_client import Counter
from pydantic import Field
from ulid import ULID

from shared.cloudevents import encode
from shared.errors import Unavailable
from shared.kafka import create_producer
from shared.logging import is_sensitive
from shared.messages import Message, utcnow

from .auth import ANONYMOUS, Role

log = logging.getLogger("hookline.admin.audit")

SOURCE = "/hookline/admin"
Outcome = Literal["allowed", "refused", "failed"]
REDACTED = "[redacted]"

ENTRIES = Counter("hookline_audit_entries_total", "Audit entries written, by outcome.", ["outcome"])
WRITE_FAILURES = Counter(
    "hookline_audit_write_failures_total", "Audit entries Kafka did not acknowledge in time."
)
FOLDED = Counter(
    "hookline_audit_refusals_folded_total",
    "Refused requests (401) beyond the queue's bound, counted in a folded entry.",
)


def new_audit_id() -> str:
    return f"aud_{str(ULID()).lower()}"


class AuditEntry(Message):
    """One line of the trail: who, what, when, from where, and how it ended."""

    ce_type: ClassVar[str] = "hookline.audit.recorded"

    id: str = Field(default_factory=new_audit_id)
    actor: str = Field(description='the token\'s name, or "anonymous"')
    role: Role | None = None
    action: str = Field(description='e.g. "subscription.rotate_secret", "auth.refused"')
    method: str
    path: str
    resource: str = Field(description="the kind: subscription, webhook, delivery, …")
    resource_id: str | None = None
    change_digest: str = Field(description="SHA-256 of the change, secrets removed")
    at: datetime = Field(default_factory=utcnow)
    source_ip: str | None = None
    request_id: str
    outcome: Outcome
    status: int
    count: int = Field(default=1, ge=1, description="refusals folded into this entry")


# -- the change digest ---------------------------------------------------------------------


def scrub(value: Any, *, parent: str = "", depth: int = 0) -> Any:
    """``value`` with secrets replaced by a marker: ``secret``, every value of a
    ``headers`` map, and any key named like a credential."""
    if depth > 20:
        return REDACTED
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if parent == "headers" or is_sensitive(name):
                out[name] = REDACTED if item is not None else None
            else:
                out[name] = scrub(item, parent=name.lower(), depth=depth + 1)
        return out
    if isinstance(value, list):
        return [scrub(v, parent=parent, depth=depth + 1) for v in value]
    return value


def change_digest(body: bytes | None) -> str:
    """The hex SHA-256 of ``body``'s JSON, scrubbed of secrets, keys sorted.

    No body (or an empty one) digests to the SHA-256 of nothing; a body that is not
    JSON digests to the SHA-256 of ``"unreadable"``, never of its bytes, which may
    hold a secret.
    """
    if not body or not body.strip():
        return hashlib.sha256(b"").hexdigest()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return hashlib.sha256(b'"unreadable"').hexdigest()
    canonical = orjson.dumps(scrub(data), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def refused_anonymously(
    *, method: str, path: str, source_ip: str | None, request_id: str
) -> AuditEntry:
    """The entry for a request that presented no valid token."""
    return AuditEntry(
        actor=ANONYMOUS,
        action="auth.refused",
        method=method,
        path=path,
        resource="auth",
        change_digest=change_digest(None),
        source_ip=source_ip,
        request_id=request_id,
        outcome="refused",
        status=401,
    )


# -- the trail -----------------------------------------------------------------------------


class AuditTrail:
    """Owns the writes to the ``audit`` topic."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        publish_timeout: float = 5.0,
        max_pending: int = 1000,
        flush_interval: float = 0.25,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap_servers
        self._timeout = publish_timeout
        self._max_pending = max_pending
        self._flush_interval = flush_interval
        self._factory = producer_factory or (
            lambda: create_producer(bootstrap_servers, client_id="hookline-admin-audit")
        )
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[AuditEntry] = []
        self._folded = 0
        self._folded_sample: AuditEntry | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        producer = self._factory()
        await producer.start()
        self._producer = producer
        self._writer = asyncio.create_task(self._write_refusals(), name="audit-refusals")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        try:
            with contextlib.suppress(TimeoutError, KafkaError, Unavailable):
                await asyncio.wait_for(self._flush(), self._timeout)
            if self._pending or self._folded:
                log.error(
                    "refusals left unaudited at shutdown",
                    extra={"entries": len(self._pending), "folded": self._folded},
                )
        finally:
            if self._producer is not None:
                # aiokafka's stop flushes first, and with the broker away that waits out
                # every in-flight request: a shutdown must not wait on it unbounded.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._producer.stop(), self._timeout)
                self._producer = None

    @property
    def pending(self) -> int:
        """Refusals queued and not yet acknowledged."""
        return len(self._pending) + (1 if self._folded else 0)

    async def record(self, entry: AuditEntry) -> RecordMetadata:
        """Write ``entry``; returns once Kafka acknowledged it (``acks=all``).

        Raises :class:`~shared.errors.Unavailable` (503) when it is not acknowledged
        within ``publish_timeout``.
        """
        producer = self._require()
        record = encode(entry, key=entry.actor, source=SOURCE, event_id=entry.id, time=entry.at)
        try:
            meta: RecordMetadata = await asyncio.wait_for(
                producer.send_and_wait(
                    self.topic, record.value, key=record.key, headers=record.headers
                ),
                self._timeout,
            )
        except (TimeoutError, KafkaError) as exc:
            WRITE_FAILURES.inc()
            log.error(
                "audit entry not written",
                extra={"action": entry.action, "request_id": entry.request_id, "error": repr(exc)},
            )
            raise Unavailable("the audit trail could not be written", retry_after=1) from exc
        ENTRIES.labels(entry.outcome).inc()
        return meta

    def record_refusal(self, entry: AuditEntry) -> None:
        """Queue ``entry`` for the background writer; never waits (see the module)."""
        if len(self._pending) < self._max_pending:
            self._pending.append(entry)
        else:
            self._folded += 1
            self._folded_sample = entry
            FOLDED.inc()
        self._wake.set()

    def _require(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise Unavailable("the audit trail is not running", retry_after=1)
        return self._producer

    async def _write_refusals(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except (KafkaError, Unavailable, TimeoutError) as exc:
                log.warning("refusals not yet audited; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            await asyncio.sleep(self._flush_interval)  # batches a flood into few writes

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if self._folded and self._folded_sample is not None:
            batch.append(
                self._folded_sample.model_copy(
                    update={"id": new_audit_id(), "count": self._folded, "at": utcnow()}
                )
            )
            folded, self._folded, self._folded_sample = self._folded, 0, None
        else:
            folded = 0
        if not batch:
            return
        producer = self._require()
        try:
            futures = []
            for entry in batch:
                record = encode(
                    entry, key=entry.actor, source=SOURCE, event_id=entry.id, time=entry.at
                )
                futures.append(
                    await producer.send(
                        self.topic, record.value, key=record.key, headers=record.headers
                    )
                )
            await asyncio.wait_for(asyncio.gather(*futures), self._timeout)
        except BaseException:
            # Put them back in front (a second write of one is harmless: the id is the
            # same); what no longer fits is folded, never dropped without a count.
            WRITE_FAILURES.inc()
            merged = (batch[:-1] if folded else batch) + self._pending
            self._pending, lost = merged[: self._max_pending], merged[self._max_pending :]
            self._folded += folded + len(lost)
            if self._folded and self._folded_sample is None:
                self._folded_sample = lost[-1] if lost else batch[-1]
            raise
        for entry in batch:
            ENTRIES.labels(entry.outcome).inc()
