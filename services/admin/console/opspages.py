"""The console's read pages for delivery: subscriptions, deliveries, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from services.admin.deadletters import get_dead_letter, list_dead_letters
from services.admin.deliveries import get_delivery, list_deliveries
from services.admin.endpoint_health import compute
from services.admin.opsmodels import DeadLetterQuery, DeliveryQuery
from services.admin.web import not_found, parse
from shared.entities import Subscription

from .core import Console, Viewer
from .overview import needs_attention

RECENT = 50
HOUR = timedelta(hours=1)
FILTERS = ("subscription_id", "outcome", "event_type", "run_id", "workflow_id", "since", "until")


def utc_input(value: str) -> str:
    """A ``datetime-local`` field's value (no zone, shown as UTC) as RFC 3339."""
    value = value.strip()
    if not value:
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value  # the query model says what is wrong with it
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def local_input(moment: datetime) -> str:
    """A time as a ``datetime-local`` field's value (UTC, to the second)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


async def subscriptions(console: Console, request: Request, viewer: Viewer) -> Response:
    subs = sorted(console.ctx.view.all(Subscription), key=lambda s: s.id)
    health = await compute(console.ctx, [s.id for s in subs]) if subs else []
    rows = [
        {"sub": s, "health": h, "reasons": needs_attention(s, h)}
        for s, h in zip(subs, health, strict=True)
    ]
    return console.render(request, "subscriptions.html", viewer, rows=rows)


async def subscription(console: Console, request: Request, viewer: Viewer) -> Response:
    sub_id: str = request.path_params["id"]
    sub = console.ctx.view.subscription(sub_id)
    if sub is None:
        raise not_found(f"subscription {sub_id!r}")
    (health,) = await compute(console.ctx, [sub_id])

    def failures(conn: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for outcome in ("failed", "exhausted"):
            query = DeliveryQuery(subscription_id=sub_id, outcome=outcome, attempts=True, limit=10)
            found += list_deliveries(conn, query)[0]
        found.sort(key=lambda d: d["last_attempt_at"], reverse=True)
        return found[:10]

    recent = await console.ctx.view_db.read(failures)
    now = datetime.now(UTC)
    return console.render(
        request,
        "subscription.html",
        viewer,
        sub=sub,
        health=health,
        reasons=needs_attention(sub, health),
        failures=recent,
        secrets=[s for s in sub.secrets if s.active(now)],
        hour_ago=local_input(now.replace(microsecond=0) - HOUR),
    )


async def deliveries(console: Console, request: Request, viewer: Viewer) -> Response:
    given = {k: request.query_params.get(k, "").strip() for k in FILTERS}
    data: dict[str, Any] = {k: v for k, v in given.items() if v}
    for name in ("since", "until"):
        if name in data:
            data[name] = utc_input(data[name])
    query = parse(DeliveryQuery, {**data, "limit": RECENT, "attempts": False}, "query")
    if cursor := request.query_params.get("cursor"):
        query = query.model_copy(update={"cursor": cursor})
    items, next_cursor = await console.ctx.view_db.read(lambda c: list_deliveries(c, query))
    subs = sorted(s.id for s in console.ctx.view.all(Subscription))
    more = None
    if next_cursor:
        more = urlencode({**{k: v for k, v in given.items() if v}, "cursor": next_cursor})
    live = urlencode({k: v for k, v in given.items() if v and k not in ("since", "until")})
    return console.render(
        request,
        "deliveries.html",
        viewer,
        items=items,
        filters=given,
        subscriptions=subs,
        more=more,
        live_query=live,
        live_enabled=not given["until"] and not request.query_params.get("cursor"),
        hour_ago=local_input(datetime.now(UTC).replace(microsecond=0) - HOUR),
    )


async def delivery(console: Console, request: Request, viewer: Viewer) -> Response:
    delivery_id: str = request.path_params["id"]
    found = await console.ctx.view_db.read(lambda c: get_delivery(c, delivery_id))
    if found is None:
        raise not_found(f"delivery {delivery_id!r}")
    return console.render(
        request,
        "delivery.html",
        viewer,
        delivery=found,
        subscription=console.ctx.view.subscription(found["subscription_id"]),
        live_query=urlencode({"delivery_id": delivery_id}),
    )


async def dead_letters(console: Console, request: Request, viewer: Viewer) -> Response:
    query = DeadLetterQuery(limit=RECENT)
    if cursor := request.query_params.get("cursor"):
        query = parse(DeadLetterQuery, {"limit": RECENT, "cursor": cursor}, "query")
    items, next_cursor = await console.ctx.view_db.read(lambda c: list_dead_letters(c, query))
    return console.render(
        request,
        "dead_letters.html",
        viewer,
        items=items,
        more=urlencode({"cursor": next_cursor}) if next_cursor else None,
    )


async def dead_letter(console: Console, request: Request, viewer: Viewer) -> Response:
    dead_letter_id: str = request.path_params["id"]
    found = await console.ctx.view_db.read(lambda c: get_dead_letter(c, dead_letter_id))
    if found is None:
        raise not_found(f"dead letter {dead_letter_id!r}")
    return console.render(request, "dead_letter.html", viewer, item=found)
