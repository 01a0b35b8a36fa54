"""The few reads the console makes that the API has no list for: runs, a run's events.

A run's lifecycle comes from its deliveries: every delivery carries the lifecycle event
it sent (its body) and that event's place on ``workflow-events``, so the run's events
are the distinct source records among its deliveries, in topic order (one partition
per run), each with the deliveries it caused. Events no subscription wanted are not in
the view, so not on the timeline; the run's queued and latest status come from the
``runs`` table (runs started by an inbound event).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import orjson

from services.admin.listing import dict_rows
from services.admin.viewdb import from_us, to_us

RUN_COLUMNS = (
    "run_id, workflow_id, inbound_event_id, webhook_id, provider_event_id, replay_id, status, "
    "queued_at, updated_at"
)


def _run(row: dict[str, Any]) -> dict[str, Any]:
    row["queued_at"], row["updated_at"] = from_us(row["queued_at"]), from_us(row["updated_at"])
    return row


def recent_runs(
    conn: sqlite3.Connection, limit: int, before: datetime | None = None
) -> list[dict[str, Any]]:
    where, params = "", []
    if before is not None:
        where, params = "WHERE queued_at < ?", [to_us(before)]
    rows = dict_rows(
        conn,
        f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY queued_at DESC, run_id DESC LIMIT ?",  # noqa: S608
        [*params, limit],
    )
    return [_run(r) for r in rows]


def run_of(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    rows = dict_rows(conn, f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", [run_id])  # noqa: S608
    return _run(rows[0]) if rows else None


def _detail(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    for name in ("to", "node_id", "error", "message"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def run_timeline(conn: sqlite3.Connection, run_id: str, limit: int = 500) -> list[dict[str, Any]]:
    """The run's lifecycle events, oldest first, each with its deliveries."""
    rows = dict_rows(
        conn,
        "SELECT delivery_id, subscription_id, event_type, outcome, attempt_count, status_code, "
        "last_attempt_at, next_attempt_at, body, source_topic, source_partition, source_offset "
        "FROM deliveries WHERE run_id = ? "
        "ORDER BY source_partition, source_offset, first_attempt_at LIMIT ?",
        [run_id, limit],
    )
    events: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["source_topic"], row["source_partition"], row["source_offset"])
        event = events.get(key)
        if event is None:
            try:
                body = orjson.loads(row["body"] or "{}")
            except orjson.JSONDecodeError:
                body = {}
            event = {
                "type": row["event_type"],
                "detail": _detail(body),
                "occurred_at": body.get("timestamp"),
                "offset": row["source_offset"],
                "deliveries": [],
            }
            events[key] = event
        row["last_attempt_at"] = from_us(row["last_attempt_at"])
        row["next_attempt_at"] = from_us(row["next_attempt_at"])
        event["deliveries"].append(row)
    return sorted(events.values(), key=lambda e: (e["occurred_at"] or "", e["offset"] or 0))
