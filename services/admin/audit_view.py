"""The audit trail's query side: the ``audit`` topic in the view, and ``GET /v1/audit``.

The materializer follows ``audit`` into the ``audit`` table (see :mod:`.viewdb`) (one row per entry,
keyed by its id, so an entry written twice is one row) and expires rows with the
topic's retention. ``GET /v1/audit`` pages it newest first; its filters combine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from .listing import Page
from .models import ExternalId, ListQuery
from .opsmodels import Since, Until
from .viewdb import from_us, to_us
from .web import model_response, parse_query

if TYPE_CHECKING:
    from .context import AdminContext

AUDIT_TYPE = b"hookline.audit.recorded"

_INSERT = "INSERT OR REPLACE INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
COLUMNS = (
    "id, at, actor, role, action, method, path, resource, resource_id, change_digest, "
    "source_ip, request_id, outcome, status, count"
)


def audit_rows(conn: sqlite3.Connection, records: Iterable[Any]) -> int:
    """Rows of ``audit`` records (the materializer's :class:`~.rows.Raw`); the bad counted."""
    rows: list[tuple[Any, ...]] = []
    bad = 0
    for r in records:
        try:
            if dict(r.headers).get("ce_type") != AUDIT_TYPE or r.value is None:
                raise ValueError("not an audit record")
            e = orjson.loads(r.value)
            rows.append(
                (
                    e["id"],
                    to_us(datetime.fromisoformat(e["at"])),
                    e["actor"],
                    e.get("role"),
                    e["action"],
                    e["method"],
                    e["path"],
                    e["resource"],
                    e.get("resource_id"),
                    e["change_digest"],
                    e.get("source_ip"),
                    e["request_id"],
                    e["outcome"],
                    int(e["status"]),
                    int(e.get("count", 1)),
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            bad += 1
    conn.executemany(_INSERT, rows)
    return bad


# -- the API -----------------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AuditQuery(ListQuery):
    actor: Name | None = Field(default=None, description='a token\'s name, or "anonymous"')
    resource: ExternalId | None = Field(default=None, description="a kind: subscription, …")
    resource_id: ExternalId | None = None
    action: Name | None = Field(default=None, description='e.g. "subscription.rotate_secret"')
    outcome: Literal["allowed", "refused", "failed"] | None = None
    since: Since = None
    until: Until = None


class AuditOut(BaseModel):
    id: str
    at: datetime
    actor: str = Field(description='the token\'s name, or "anonymous"')
    role: str | None = None
    action: str
    method: str
    path: str
    resource: str
    resource_id: str | None = None
    change_digest: str = Field(description="SHA-256 of the request body, secrets removed")
    source_ip: str | None = None
    request_id: str
    outcome: Literal["allowed", "refused", "failed"]
    status: int
    count: int = Field(description="refusals folded into this entry (under a flood)")


class AuditList(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None = None


def list_audit(conn: sqlite3.Connection, q: AuditQuery) -> tuple[list[dict[str, Any]], str | None]:
    page = (
        Page("audit", "at", "id")
        .equal("actor", q.actor)
        .equal("resource", q.resource)
        .equal("resource_id", q.resource_id)
        .equal("action", q.action)
        .equal("outcome", q.outcome)
        .between(q.since, q.until)
        .after(q.cursor)
    )
    rows, cursor = page.fetch(conn, COLUMNS, q.limit)
    items = [{**dict(row), "at": from_us(row["at"])} for row in rows]
    return items, cursor


class AuditHandlers:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def list_all(self, request: Request) -> Response:
        q = parse_query(request, AuditQuery)
        items, cursor = await self.ctx.view_db.read(lambda c: list_audit(c, q))
        return model_response(
            AuditList(items=[AuditOut.model_validate(i) for i in items], next_cursor=cursor)
        )
