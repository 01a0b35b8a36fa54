"""The console's read pages for intake: overview, webhooks, inbound events, runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.admin.endpoint_health import compute
from services.admin.inbound import get_inbound, list_inbound
from services.admin.opsmodels import InboundQuery
from services.admin.web import not_found
from shared.entities import Subscription, Webhook

from . import charts
from .core import Console, Viewer
from .overview import hour_figures, needs_attention
from .queries import recent_runs, run_of, run_timeline

RECENT = 50


async def overview(console: Console, request: Request, viewer: Viewer) -> Response:
    ctx = console.ctx
    now = datetime.now(UTC)
    figures = await ctx.view_db.read(lambda c: hour_figures(c, now))
    subs = sorted(ctx.view.all(Subscription), key=lambda s: s.id)
    health = await compute(ctx, [s.id for s in subs]) if subs else []
    attention = [
        {"sub": sub, "health": h, "reasons": reasons}
        for sub, h in zip(subs, health, strict=True)
        if (reasons := needs_attention(sub, h))
    ]
    S = charts.Series
    intake = charts.bars(
        "intake",
        "Inbound events per minute, by outcome",
        [
            S("triggered a run", "ok", figures.intake["triggered"]),
            S("accepted, no run", "muted", figures.intake["accepted"]),
            S("duplicate", "warn", figures.intake["duplicate"]),
        ],
    )
    attempts = charts.bars(
        "attempts",
        "Delivery requests per minute",
        [
            S("succeeded", "ok", figures.attempts_ok),
            S("failed", "bad", figures.attempts_failed),
        ],
    )
    rate = [None if v is None else v * 100 for v in figures.success_rate]
    success = charts.lines(
        "success", "Delivery success rate per minute", [S("success", "line-a", rate)], " %", 100
    )
    latency = charts.lines(
        "latency",
        "Delivery latency per minute, p50 and p99",
        [
            S("p50", "line-a", figures.latency_p50),
            S("p99", "line-b", figures.latency_p99),
        ],
        " ms",
    )
    trouble = charts.bars(
        "trouble",
        "Retries and dead letters per minute",
        [S("retries", "warn", figures.retries), S("dead letters", "bad", figures.dead_letters)],
    )
    return console.render(
        request,
        "overview.html",
        viewer,
        figures=figures,
        charts=[intake, attempts, success, latency, trouble],
        attention=attention,
        subscriptions=len(subs),
        webhooks=len(ctx.view.all(Webhook)),
    )


async def webhooks(console: Console, request: Request, viewer: Viewer) -> Response:
    items = sorted(console.ctx.view.all(Webhook), key=lambda w: w.id)
    return console.render(request, "webhooks.html", viewer, webhooks=items)


async def webhook(console: Console, request: Request, viewer: Viewer) -> Response:
    webhook_id: str = request.path_params["id"]
    found = console.ctx.view.webhook(webhook_id)
    if found is None:
        raise not_found(f"webhook {webhook_id!r}")
    query = InboundQuery(webhook_id=webhook_id, limit=RECENT)
    events, _ = await console.ctx.view_db.read(lambda c: list_inbound(c, query))
    return console.render(
        request,
        "webhook.html",
        viewer,
        webhook=found,
        secrets=[s.hint for s in found.secrets if s.active(datetime.now(UTC))],
        events=events,
        live_query=f"webhook_id={webhook_id}",
    )


async def event(console: Console, request: Request, viewer: Viewer) -> Response:
    event_id: str = request.path_params["id"]
    found = await console.ctx.view_db.read(lambda c: get_inbound(c, event_id))
    if found is None:
        raise not_found(f"inbound event {event_id!r}")
    return console.render(request, "event.html", viewer, event=found)


async def runs(console: Console, request: Request, viewer: Viewer) -> Response:
    items = await console.ctx.view_db.read(lambda c: recent_runs(c, RECENT * 2))
    return console.render(request, "runs.html", viewer, runs=items)


async def run(console: Console, request: Request, viewer: Viewer) -> Response:
    run_id: str = request.path_params["id"]

    def read(conn: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        return run_of(conn, run_id), run_timeline(conn, run_id)

    found, timeline = await console.ctx.view_db.read(read)
    if found is None and not timeline:
        raise not_found(f"run {run_id!r}")
    return console.render(
        request,
        "run.html",
        viewer,
        run_id=run_id,
        run=found,
        timeline=timeline,
        live_query=f"run_id={run_id}",
    )
