"""Records to rows: how each followed topic's records land in the view database.

Runs in the view's writer thread. One call of :func:`apply_batch` is one SQLite
transaction holding a batch's rows *and* each partition's next offset, so the
file never holds a row without the offset that covers it (nor the reverse).

Decoding is deliberately light (orjson and key lookups, not the pydantic
models): this is the path a catch-up of millions of attempt records takes. A
record that does not parse is counted, logged once per batch and skipped; its
offset still moves on, as everywhere else in hookline.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.cloudevents import decode
from shared.errors import PoisonMessage
from shared.messages import OperationState, inbound_event_id

from .audit_view import audit_rows
from .viewdb import to_us

log = logging.getLogger("hookline.admin.view")

ATTEMPT_TYPE = b"hookline.delivery.attempted"
RECEIVED_TYPE = b"hookline.webhook.received"
STATUS_TYPE = b"status.changed"
EXCERPT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Raw:
    """What the writer thread needs of one consumed record."""

    partition: int
    offset: int
    timestamp: int  # milliseconds, the record's Kafka timestamp
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def _time(text: Any) -> int | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError("not a time")
    return to_us(datetime.fromisoformat(text))


def _type(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == "ce_type":
            return value
    return None


def _run_id_of(body: str | None) -> str | None:
    """The run id inside a delivery's body (``{type, timestamp, data: {run_id, …}}``)."""
    if not body:
        return None
    try:
        run_id = orjson.loads(body)["data"]["run_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return run_id if isinstance(run_id, str) else None


# -- delivery-attempts ------------------------------------------------------------------------

_UPSERT_DELIVERY = """
INSERT INTO deliveries (delivery_id, message_id, subscription_id, event_type, workflow_id,
  run_id, source_topic, source_partition, source_offset, body, outcome, attempt_count,
  status_code, next_attempt_at, first_attempt_at, last_attempt_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
ON CONFLICT (delivery_id) DO UPDATE SET
  outcome = excluded.outcome, attempt_count = attempt_count + 1,
  status_code = excluded.status_code, next_attempt_at = excluded.next_attempt_at,
  last_attempt_at = excluded.last_attempt_at, body = coalesce(excluded.body, body),
  run_id = coalesce(run_id, excluded.run_id),
  source_topic = coalesce(excluded.source_topic, source_topic),
  source_partition = coalesce(excluded.source_partition, source_partition),
  source_offset = coalesce(excluded.source_offset, source_offset)
"""
_INSERT_ATTEMPT = """
INSERT INTO attempts (delivery_id, subscription_id, attempt, outcome, status_code, error,
  latency_ms, response_excerpt, next_attempt_at, attempted_at, url)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _attempts(conn: sqlite3.Connection, records: Iterable[Raw]) -> int:
    deliveries: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    bad = 0
    for r in records:
        try:
            if _type(r.headers) != ATTEMPT_TYPE or r.value is None:
                raise ValueError("not an attempt record")
            a = orjson.loads(r.value)
            at = _time(a["attempted_at"])
            source = a.get("source") or {}
            body = a.get("body")
            deliveries.append(
                (
                    a["delivery_id"],
                    a["message_id"],
                    a["subscription_id"],
                    a["event_type"],
                    a.get("workflow_id"),
                    _run_id_of(body),
                    source.get("topic"),
                    source.get("partition"),
                    source.get("offset"),
                    body,
                    a["outcome"],
                    a.get("status_code"),
                    _time(a.get("next_attempt_at")),
                    at,
                    at,
                )
            )
            attempts.append(
                (
                    a["delivery_id"],
                    a["subscription_id"],
                    a["attempt"],
                    a["outcome"],
                    a.get("status_code"),
                    a.get("error"),
                    a.get("latency_ms"),
                    a.get("response_excerpt"),
                    _time(a.get("next_attempt_at")),
                    at,
                    a.get("url"),
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            bad += 1
    conn.executemany(_UPSERT_DELIVERY, deliveries)
    conn.executemany(_INSERT_ATTEMPT, attempts)
    return bad


# -- inbound ----------------------------------------------------------------------------------

_INSERT_INBOUND = """
INSERT OR REPLACE INTO inbound_events (id, partition, offset, ce_id, webhook_id, provider,
  event_type, provider_event_id, received_at, source_ip, content_type, headers,
  payload_encoding, payload, verification, replay_id, replay_of, duplicate_of)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _earlier(conn: sqlite3.Connection, e: dict[str, Any], replay: dict[str, Any]) -> str | None:
    """The record this one repeats: a provider's redelivery, or a replay written twice."""
    if replay:
        row = conn.execute(
            "SELECT id FROM inbound_events WHERE replay_id = ? AND replay_of = ? LIMIT 1",
            (replay.get("id"), replay.get("of")),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT id FROM inbound_events WHERE webhook_id = ? AND provider_event_id = ?"
            " AND replay_id IS NULL ORDER BY received_at LIMIT 1",
            (e["webhook_id"], e["provider_event_id"]),
        ).fetchone()
    return None if row is None else str(row[0])


def _inbound(conn: sqlite3.Connection, records: Iterable[Raw]) -> int:
    bad = 0
    for r in records:
        try:
            if _type(r.headers) != RECEIVED_TYPE or r.value is None:
                raise ValueError("not an inbound record")
            e = orjson.loads(r.value)
            replay = e.get("replay") or {}
            ce_id = next((v.decode() for k, v in r.headers if k == "ce_id"), None)
            conn.execute(
                _INSERT_INBOUND,
                (
                    inbound_event_id(r.partition, r.offset),
                    r.partition,
                    r.offset,
                    ce_id,
                    e["webhook_id"],
                    e["provider"],
                    e["event_type"],
                    e["provider_event_id"],
                    _time(e["received_at"]),
                    e.get("source_ip"),
                    e.get("content_type"),
                    orjson.dumps(e.get("headers") or {}).decode(),
                    e.get("payload_encoding", "json"),
                    orjson.dumps(e.get("payload")).decode(),
                    e.get("verification"),
                    replay.get("id"),
                    replay.get("of"),
                    _earlier(conn, e, replay),
                ),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            bad += 1
    return bad


# -- workflow-events (runs) -------------------------------------------------------------------


def _runs(conn: sqlite3.Connection, records: Iterable[Raw]) -> int:
    bad = 0
    for r in records:
        if _type(r.headers) != STATUS_TYPE or r.value is None:
            continue  # only status changes say anything about a run's state
        try:
            e = orjson.loads(r.value)
            at = _time(e["occurred_at"])
            trigger = e.get("trigger")
            if e.get("to") == "queued" and trigger:
                conn.execute(
                    "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                    (
                        e["run_id"],
                        e["workflow_id"],
                        trigger["inbound_event_id"],
                        trigger["webhook_id"],
                        trigger["provider_event_id"],
                        trigger.get("replay_id"),
                        at,
                        at,
                    ),
                )
            else:
                conn.execute(
                    "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?",
                    (e["to"], at, e["run_id"]),
                )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            bad += 1
    return bad


# -- dlq ----------------------------------------------------------------------------------------


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def _dead_letters(conn: sqlite3.Connection, records: Iterable[Raw]) -> int:
    rows = []
    for r in records:
        headers = {k: _text(v) or "" for k, v in r.headers}
        source_partition = headers.get("hookline_source_partition", "")
        source_offset = headers.get("hookline_source_offset", "")
        rows.append(
            (
                f"dlq_{r.partition}_{r.offset}",
                r.partition,
                r.offset,
                headers.get("hookline_source_topic"),
                int(source_partition) if source_partition.lstrip("-").isdigit() else None,
                int(source_offset) if source_offset.lstrip("-").isdigit() else None,
                headers.get("hookline_error"),
                headers.get("hookline_error_code"),
                headers.get("hookline_service"),
                _text(r.key),
                orjson.dumps(headers).decode(),
                _text((r.value or b"")[:EXCERPT_BYTES]),
                len(r.value or b""),
                r.timestamp * 1000,
            )
        )
    conn.executemany(
        "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return 0


# -- operations ---------------------------------------------------------------------------------


def _operations(conn: sqlite3.Connection, records: Iterable[Raw]) -> int:
    bad = 0
    for r in records:
        key = _text(r.key) or ""
        if r.value is None:
            conn.execute("DELETE FROM operations WHERE key = ?", (key,))
            continue
        try:
            state = decode(list(r.headers), r.value, OperationState).data
        except PoisonMessage:
            bad += 1
            continue
        conn.execute(
            "INSERT OR REPLACE INTO operations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                state.id,
                state.kind,
                state.status,
                to_us(state.requested_at),
                to_us(state.updated_at),
                state.dead_letter_id,
                state.model_dump_json(),
            ),
        )
    return bad


Apply = Callable[[sqlite3.Connection, Iterable[Raw]], int]


@dataclass(frozen=True)
class Layout:
    """Which function each followed topic's records go through."""

    by_topic: dict[str, Apply]

    @classmethod
    def of(
        cls, *, attempts: str, inbound: str, events: str, dlq: str, operations: str, audit: str
    ) -> Layout:
        return cls(
            {
                attempts: _attempts,
                inbound: _inbound,
                events: _runs,
                dlq: _dead_letters,
                operations: _operations,
                audit: audit_rows,
            }
        )


def apply_batch(
    conn: sqlite3.Connection, layout: Layout, batch: Sequence[tuple[str, int, Sequence[Raw]]]
) -> int:
    """Rows and next offsets of ``batch`` (``(topic, partition, records)``) in one transaction."""
    bad = 0
    conn.execute("BEGIN")
    try:
        for topic, partition, records in batch:
            if not records:
                continue
            bad += layout.by_topic[topic](conn, records)
            conn.execute(
                "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)",
                (topic, partition, records[-1].offset + 1),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if bad:
        log.warning("skipped records the view cannot read", extra={"count": bad})
    return bad


def stored_offsets(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
    rows = conn.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
    return {(t, p): o for t, p, o in rows}


def now_us() -> int:
    return to_us(datetime.now(UTC))
