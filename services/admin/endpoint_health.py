"""Per-subscription health, from the attempts in the view: success rate, latency, failures.

Over the last 5 minutes, hour and day: requests made (attempts with an answer or a
transport error; hand-ons past an open breaker make no request and are not
counted), the share that succeeded, and p50/p99 latency (nearest rank). Also the
consecutive failed requests up to now, the last error and the last success.

The breaker's state is inferred, since the delivery service keeps it per
process and writes it nowhere: ``open`` when the consecutive failures reach
``breaker_failure_threshold`` and the last failure is within ``breaker_cooldown``;
``half_open`` when they reach it but the cooldown has passed (the next delivery
is a probe); ``closed`` otherwise.

With ``HOOKLINE_SUBSCRIPTION_METRICS=1`` the same figures are Prometheus series
labelled by subscription (the operator chooses that cardinality); a background
task refreshes them every ``refresh_every`` seconds, so a scrape never queries
the database on the event loop. Lifecycle: ``async with HealthMetrics(...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from prometheus_client import Gauge
from starlette.requests import Request
from starlette.responses import Response

from shared.entities import Subscription

from .context import AdminContext
from .opsmodels import HealthOut
from .viewdb import from_us, to_us
from .web import model_response, not_found

log = logging.getLogger("hookline.admin")

WINDOWS = (("5m", timedelta(minutes=5)), ("1h", timedelta(hours=1)), ("1d", timedelta(days=1)))
REQUEST = (
    "outcome IN ('succeeded', 'failed', 'exhausted') AND coalesce(error, '') != 'circuit_open'"
)
STREAK_LIMIT = 10_000

SUCCESS = Gauge(
    "hookline_subscription_success_ratio",
    "Share of requests that succeeded, per subscription and window.",
    ["subscription", "window"],
)
LATENCY = Gauge(
    "hookline_subscription_latency_ms",
    "Request latency per subscription, window and quantile.",
    ["subscription", "window", "quantile"],
)
FAILING = Gauge(
    "hookline_subscription_consecutive_failures",
    "Failed requests in a row, per subscription.",
    ["subscription"],
)
BREAKER = Gauge(
    "hookline_subscription_breaker_open",
    "1 when the subscription's breaker is inferred open, per subscription.",
    ["subscription"],
)


def _rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, int(q * len(values) + 0.999999) - 1))]


def health_of(
    conn: sqlite3.Connection, subscription_id: str, now: datetime, threshold: int, cooldown: float
) -> dict[str, Any]:
    windows = []
    for name, span in WINDOWS:
        since = to_us(now - span)
        latencies = [
            row[0]
            for row in conn.execute(
                f"SELECT latency_ms FROM attempts WHERE subscription_id = ? AND attempted_at >= ?"  # noqa: S608
                f" AND {REQUEST} AND latency_ms IS NOT NULL ORDER BY latency_ms",
                (subscription_id, since),
            )
        ]
        total, ok = conn.execute(
            f"SELECT count(*), coalesce(sum(outcome = 'succeeded'), 0) FROM attempts"  # noqa: S608
            f" WHERE subscription_id = ? AND attempted_at >= ? AND {REQUEST}",
            (subscription_id, since),
        ).fetchone()
        windows.append(
            {
                "window": name,
                "attempts": total,
                "succeeded": ok,
                "success_rate": round(ok / total, 4) if total else None,
                "latency_p50_ms": _rank(latencies, 0.50),
                "latency_p99_ms": _rank(latencies, 0.99),
            }
        )
    recent = conn.execute(
        f"SELECT outcome, status_code, error, attempted_at FROM attempts"  # noqa: S608
        f" WHERE subscription_id = ? AND {REQUEST} ORDER BY attempted_at DESC LIMIT ?",
        (subscription_id, STREAK_LIMIT),
    )
    streak, last_error, last_error_at, last_success_at = 0, None, None, None
    for outcome, status, error, at in recent:
        if outcome == "succeeded":
            last_success_at = at
            break
        streak += 1
        if last_error is None:
            last_error, last_error_at = error or f"HTTP {status}", at
    if last_success_at is None:
        found = conn.execute(
            "SELECT max(attempted_at) FROM attempts WHERE subscription_id = ?"
            " AND outcome = 'succeeded'",
            (subscription_id,),
        ).fetchone()
        last_success_at = found[0]
    breaker = "closed"
    if streak >= threshold and last_error_at is not None:
        recent_failure = to_us(now) - last_error_at < cooldown * 1_000_000
        breaker = "open" if recent_failure else "half_open"
    return {
        "subscription_id": subscription_id,
        "consecutive_failures": streak,
        "breaker": breaker,
        "last_error": last_error,
        "last_error_at": from_us(last_error_at),
        "last_success_at": from_us(last_success_at),
        "windows": windows,
    }


class HealthHandlers:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def get(self, request: Request) -> Response:
        subscription_id: str = request.path_params["id"]
        if self.ctx.view.subscription(subscription_id) is None:
            raise not_found(f"subscription {subscription_id!r}")
        found = await compute(self.ctx, [subscription_id])
        return model_response(HealthOut.model_validate(found[0]))


async def compute(ctx: AdminContext, subscription_ids: list[str]) -> list[dict[str, Any]]:
    settings, now = ctx.settings, datetime.now(UTC)

    def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        return [
            health_of(conn, s, now, settings.breaker_failure_threshold, settings.breaker_cooldown)
            for s in subscription_ids
        ]

    return await ctx.view_db.read(run)


class HealthMetrics:
    """Refreshes the per-subscription series while in its context (when enabled)."""

    def __init__(self, ctx: AdminContext, *, refresh_every: float = 30.0) -> None:
        self._ctx = ctx
        self._every = refresh_every
        self._task: asyncio.Task[None] | None = None
        self._labelled: set[str] = set()

    async def __aenter__(self) -> Self:
        if self._ctx.settings.subscription_metrics:
            self._task = asyncio.create_task(self._loop(), name="subscription-metrics")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> None:
        ids = sorted(s.id for s in self._ctx.view.all(Subscription))
        for gone in self._labelled - set(ids):
            for gauge in (FAILING, BREAKER):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
            for window, _ in WINDOWS:
                with contextlib.suppress(KeyError):
                    SUCCESS.remove(gone, window)
                for q in ("0.5", "0.99"):
                    with contextlib.suppress(KeyError):
                        LATENCY.remove(gone, window, q)
        for h in await compute(self._ctx, ids):
            sub = h["subscription_id"]
            FAILING.labels(sub).set(h["consecutive_failures"])
            BREAKER.labels(sub).set(1 if h["breaker"] == "open" else 0)
            for w in h["windows"]:
                if w["success_rate"] is not None:
                    SUCCESS.labels(sub, w["window"]).set(w["success_rate"])
                for q, key in (("0.5", "latency_p50_ms"), ("0.99", "latency_p99_ms")):
                    if w[key] is not None:
                        LATENCY.labels(sub, w["window"], q).set(w[key])
        self._labelled = set(ids)

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except (sqlite3.Error, RuntimeError) as exc:
                log.warning("subscription metrics not refreshed", extra={"error": repr(exc)})
            await asyncio.sleep(self._every)
