"""Replays of inbound events and recoveries of failed deliveries, as jobs over Kafka.

**Replay** (``POST /v1/webhooks/{id}/replay``): every inbound record of the webhook
in the window (originals only, not earlier replays; optionally only some event
types) is written again to ``inbound`` with a ``replay`` marker ``{id,
requested_at, of}``. The dispatcher derives the replayed runs' ids from the event
*and* the replay id, so they are new runs (never swallowed by the redelivery
dedupe), and the same replay written twice gives the same ids (started once).
The marker and the CloudEvents id are functions of the replay and the original
record, so a resumed replay writes the same records again. Without an ``id`` (or
``Idempotency-Key``), the replay's id derives from the request itself, so the
same request sent twice is one replay.

**Recovery** (``POST /v1/subscriptions/{id}/recover``): ``workflow-events`` is read
over the window; for each event the subscription wants, its delivery (the ids
derive from the record's position, as the delivery service derives them) is
looked up in the view, and one that did not succeed is sent again as a
``DeliveryDue`` with its webhook-id and its recorded body (rendered from the
event when none is recorded). An event with no attempt yet is left to the
delivery service, which may still have it in flight.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from services.delivery import delivery_id, message_id, render_body
from shared.cloudevents import KafkaRecord, decode, decode_any, encode
from shared.entities import Subscription, event_pattern_matches
from shared.errors import IdInUse, PoisonMessage
from shared.messages import (
    LIFECYCLE_EVENTS,
    DeliveryDue,
    LifecycleEvent,
    OperationState,
    ReplayMarker,
    SourceRecord,
    WebhookReceived,
    inbound_event_id,
)

from .context import AdminContext
from .deliveries import send_dues
from .jobs import Records, bump, load, publish_many, same_request, save, window
from .listing import Page, dict_rows
from .opsmodels import OperationList, OperationOut, OperationQuery, RecoverIn, RecoverOut, ReplayIn
from .web import invalid, model_response, not_found, parse, parse_query, read_json

REPLAY_SOURCE = "/hookline/admin/replay"
REPLAY_NAMESPACE = uuid.UUID("8d3f5a0e-6c1b-5f27-a4e9-3b2d1c0f9e88")
RECOVERY_WAIT = 10.0
MAX_IDS = 1000


def derived_id(prefix: str, *parts: Any) -> str:
    digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_UTC_Z)).hexdigest()
    return f"{prefix}_{digest[:24]}"


def request_id(request: Request, given: str | None) -> str | None:
    key = request.headers.get("idempotency-key", "").strip()
    if given is not None and key and key != given:
        raise invalid(["body", "id"], "the body's id and Idempotency-Key differ")
    return given or key[:128] or None


def wants(sub: Subscription, event_type: str, workflow_id: str | None) -> bool:
    """Whether the subscription's filters take the event (enabled or not)."""
    return any(event_pattern_matches(p, event_type) for p in sub.events) and (
        not sub.workflow_ids or workflow_id in sub.workflow_ids
    )


class ReplayJobs:
    """The two job kinds' record handling, and their HTTP handlers."""

    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    # -- record handling (called by the job runner) --------------------------------------

    async def replay_records(self, state: OperationState, records: Records) -> None:
        out: list[KafkaRecord] = []
        for r in records:
            try:
                event = decode(r.headers, r.value, WebhookReceived).data
            except PoisonMessage:
                continue
            bump(state, scanned=1)
            if event.webhook_id != state.webhook_id or event.replay is not None:
                continue
            if state.event_types and not any(
                event_pattern_matches(p, event.event_type) for p in state.event_types
            ):
                continue
            of = inbound_event_id(r.partition, r.offset)
            marker = ReplayMarker(id=state.id, requested_at=state.requested_at, of=of)
            replayed = event.model_copy(update={"replay": marker})
            ce_id = str(uuid.uuid5(REPLAY_NAMESPACE, f"{state.id}/{of}"))
            out.append(encode(replayed, key=event.webhook_id, source=REPLAY_SOURCE, event_id=ce_id))
        await publish_many(self.ctx, self.ctx.topics.inbound, out)
        bump(state, matched=len(out), written=len(out))

    async def recover_records(self, state: OperationState, records: Records) -> None:
        sub = self.ctx.view.subscription(state.subscription_id or "")
        if sub is None:
            raise RuntimeError(f"subscription {state.subscription_id!r} no longer exists")
        wanted: dict[str, tuple[Any, LifecycleEvent]] = {}
        for r in records:
            bump(state, scanned=1)
            try:
                event = decode_any(r.headers, r.value, expect=LIFECYCLE_EVENTS)
            except PoisonMessage:
                continue
            data = event.data
            assert isinstance(data, LifecycleEvent)
            if wants(sub, event.type, data.workflow_id):
                source = SourceRecord(topic=r.topic, partition=r.partition, offset=r.offset)
                wanted[delivery_id(source, sub.id)] = (source, data)
        bump(state, matched=len(wanted))
        if not wanted:
            return
        ids = list(wanted)
        rows = await self.ctx.view_db.read(
            lambda c: dict_rows(
                c,
                "SELECT delivery_id, outcome, body FROM deliveries WHERE delivery_id IN "  # noqa: S608
                f"({', '.join('?' for _ in ids)})",
                ids,
            )
        )
        now = datetime.now(UTC)
        dues = []
        for row in rows:
            if row["outcome"] == "succeeded":
                continue
            source, data = wanted[row["delivery_id"]]
            dues.append(
                DeliveryDue(
                    delivery_id=row["delivery_id"],
                    message_id=message_id(source, sub.id),
                    subscription_id=sub.id,
                    event_type=data.ce_type,
                    workflow_id=data.workflow_id,
                    source=source,
                    body=row["body"] or render_body(data),
                    attempt=1,
                    due_at=now,
                    first_attempted_at=now,
                )
            )
        await send_dues(self.ctx, dues)
        bump(state, redelivered=len(dues))
        room = MAX_IDS - len(state.ids)
        state.ids.extend(d.delivery_id for d in dues[:room])

    # -- HTTP -----------------------------------------------------------------------------

    async def replay(self, request: Request) -> Response:
        webhook_id: str = request.path_params["id"]
        if self.ctx.view.webhook(webhook_id) is None:
            raise not_found(f"webhook {webhook_id!r}")
        body = parse(ReplayIn, await read_json(request), "body")
        until = body.until
        types = sorted(set(body.event_types)) if body.event_types else None
        job_id = request_id(request, body.id) or derived_id(
            "rpl", webhook_id, body.since, until, types
        )
        params = {"webhook_id": webhook_id, "since": body.since, "until": until}
        return await self._start(
            "replay", job_id, self.ctx.topics.inbound, {**params, "event_types": types}
        )

    async def recover(self, request: Request) -> Response:
        subscription_id: str = request.path_params["id"]
        if self.ctx.view.subscription(subscription_id) is None:
            raise not_found(f"subscription {subscription_id!r}")
        body = parse(RecoverIn, await read_json(request), "body")
        job_id = request_id(request, body.id) or f"rcv_{uuid.uuid4().hex[:24]}"
        params = {"subscription_id": subscription_id, "since": body.since, "until": body.until}
        response = await self._start("recovery", job_id, self.ctx.topics.workflow_events, params)
        return response

    async def get(self, request: Request) -> Response:
        job_id: str = request.path_params["id"]
        for kind in ("replay", "recovery"):
            state = await load(self.ctx, kind, job_id)
            if state is not None:
                return model_response(await self._out(state))
        raise not_found(f"replay or recovery {job_id!r}")

    async def list_all(self, request: Request) -> Response:
        q = parse_query(request, OperationQuery)

        def fetch(conn: Any) -> tuple[list[Any], str | None]:
            page = Page("operations", "requested_at", "key").after(q.cursor)
            page.one_of("kind", [q.kind] if q.kind else ["replay", "recovery"])
            return page.fetch(conn, "key, requested_at, state", q.limit)

        rows, cursor = await self.ctx.view_db.read(fetch)
        items = [
            await self._out(OperationState.model_validate_json(r["state"]), summary=True)
            for r in rows
        ]
        return model_response(OperationList(items=items, next_cursor=cursor))

    async def _start(self, kind: str, job_id: str, topic: str, params: dict[str, Any]) -> Response:
        existing = await load(self.ctx, kind, job_id)
        if existing is not None:
            if not same_request(existing, params):
                raise IdInUse(f"{kind} {job_id!r} exists with other parameters")
            return model_response(await self._out(existing), 200)
        positions, ends = await window(self.ctx, topic, params["since"], params["until"])
        now = datetime.now(UTC)
        state = OperationState(
            id=job_id,
            kind=kind,  # type: ignore[arg-type]
            status="running",
            requested_at=now,
            updated_at=now,
            topic=topic,
            positions=positions,
            ends=ends,
            counts={},
            owner=self.ctx.replica,
            **params,
        )
        state = await save(self.ctx, state)
        self.ctx.jobs.start(state)
        if kind == "recovery":
            # Most recoveries are small: answer with the outcome when it comes quickly.
            await self.ctx.jobs.wait(kind, job_id, RECOVERY_WAIT)
            state = await load(self.ctx, kind, job_id) or state
        return model_response(await self._out(state), 202)

    async def _out(self, state: OperationState, summary: bool = False) -> OperationOut:
        fields: dict[str, Any] = state.model_dump(
            include={
                "id", "kind", "status", "requested_at", "updated_at", "webhook_id",
                "subscription_id", "since", "until", "event_types", "counts", "error",
            }
        )  # fmt: skip
        if state.kind == "replay" and not summary:
            rows = await self.ctx.view_db.read(
                lambda c: dict_rows(
                    c, "SELECT count(*) AS n FROM runs WHERE replay_id = ?", [state.id]
                )
            )
            fields["runs_started"] = rows[0]["n"]
        if state.kind == "recovery":
            return RecoverOut(
                **fields, redelivered=state.counts.get("redelivered", 0), delivery_ids=state.ids
            )
        return OperationOut(**fields)
