"""Inbound events from the view: what arrived, how it was verified, which runs it started.

The ingress writes a record to ``inbound`` only for a request it accepted (202);
requests it refused (401, 403, 404, 413, 429 …) are in its logs and metrics, not
on Kafka, so not here. An event's ``outcome``: ``triggered`` when a run names it
as its trigger (from ``status.changed`` to ``queued`` on ``workflow-events``),
``duplicate`` when it repeats an event already received (a provider's
redelivery, or a replay's record written twice), ``accepted`` otherwise (no
binding matched, or the dispatcher has not reached it yet).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .context import AdminContext
from .listing import Page, dict_rows
from .opsmodels import InboundDetail, InboundList, InboundOut, InboundQuery
from .viewdb import from_us
from .web import model_response, not_found, parse_query

TRIGGERED = "EXISTS (SELECT 1 FROM runs r WHERE r.inbound_event_id = e.id)"
OUTCOME = (
    f"CASE WHEN {TRIGGERED} THEN 'triggered' "
    "WHEN e.duplicate_of IS NOT NULL THEN 'duplicate' ELSE 'accepted' END AS outcome"
)
SUMMARY = (
    "e.id, e.webhook_id, e.provider, e.event_type, e.provider_event_id, e.received_at, "
    f"e.source_ip, e.verification, e.duplicate_of, e.replay_id, e.replay_of, {OUTCOME}"
)
DETAIL = f"{SUMMARY}, e.content_type, e.headers, e.payload_encoding, e.payload"
OUTCOME_FILTERS = {
    "triggered": TRIGGERED,
    "duplicate": f"NOT {TRIGGERED} AND e.duplicate_of IS NOT NULL",
    "accepted": f"NOT {TRIGGERED} AND e.duplicate_of IS NULL",
}


def _out(row: Any) -> dict[str, Any]:
    out = {k: row[k] for k in row.keys() if k not in ("headers", "payload")}  # noqa: SIM118
    out["received_at"] = from_us(row["received_at"])
    verification = row["verification"]
    out["verified"] = None if verification is None else verification != "unsigned"
    return out


def list_inbound(
    conn: sqlite3.Connection, q: InboundQuery
) -> tuple[list[dict[str, Any]], str | None]:
    page = (
        Page("inbound_events e", "received_at", "id")
        .equal("webhook_id", q.webhook_id)
        .equal("provider", q.provider)
        .equal("event_type", q.event_type)
        .equal("provider_event_id", q.provider_event_id)
        .equal("replay_id", q.replay_id)
        .between(q.since, q.until)
        .after(q.cursor)
    )
    if q.outcome is not None:
        page.clause(OUTCOME_FILTERS[q.outcome])
    rows, cursor = page.fetch(conn, SUMMARY, q.limit)
    return [_out(r) for r in rows], cursor


def get_inbound(conn: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    cursor = conn.execute(f"SELECT {DETAIL} FROM inbound_events e WHERE e.id = ?", (event_id,))  # noqa: S608
    cursor.row_factory = sqlite3.Row
    row = cursor.fetchone()
    if row is None:
        return None
    runs = dict_rows(
        conn,
        "SELECT run_id, workflow_id, status, replay_id, queued_at, updated_at FROM runs "
        "WHERE inbound_event_id = ? ORDER BY queued_at, run_id",
        [event_id],
    )
    for run in runs:
        run["queued_at"], run["updated_at"] = from_us(run["queued_at"]), from_us(run["updated_at"])
    return {
        **_out(row),
        "content_type": row["content_type"],
        "headers": orjson.loads(row["headers"]),
        "payload_encoding": row["payload_encoding"],
        "payload": orjson.loads(row["payload"]) if row["payload"] is not None else None,
        "runs": runs,
    }


class InboundHandlers:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def list_all(self, request: Request) -> Response:
        q = parse_query(request, InboundQuery)
        items, cursor = await self.ctx.view_db.read(lambda c: list_inbound(c, q))
        listing = InboundList(
            items=[InboundOut.model_validate(i) for i in items], next_cursor=cursor
        )
        return model_response(listing)

    async def get(self, request: Request) -> Response:
        event_id: str = request.path_params["id"]
        found = await self.ctx.view_db.read(lambda c: get_inbound(c, event_id))
        if found is None:
            raise not_found(f"inbound event {event_id!r}")
        return model_response(InboundDetail.model_validate(found))
