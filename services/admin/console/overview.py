"""The overview's figures: the last hour, minute by minute, from the operations view.

Intake (inbound events by outcome), deliveries (attempts: success rate, p50/p99
latency, retries), and dead letters; plus the subscriptions that need attention
(from the same health figures as ``/v1/subscriptions/{id}/health``). Runs in a
reader thread of the view database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.admin.endpoint_health import REQUEST, _rank
from services.admin.inbound import OUTCOME
from services.admin.viewdb import to_us

MINUTES = 60
MINUTE_US = 60_000_000


@dataclass
class HourFigures:
    """Per-minute series, oldest first (``MINUTES`` values each)."""

    start: datetime
    intake: dict[str, list[float]] = field(default_factory=dict)  # by outcome
    attempts_ok: list[float] = field(default_factory=list)
    attempts_failed: list[float] = field(default_factory=list)
    success_rate: list[float | None] = field(default_factory=list)
    latency_p50: list[float | None] = field(default_factory=list)
    latency_p99: list[float | None] = field(default_factory=list)
    retries: list[float] = field(default_factory=list)
    dead_letters: list[float] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)


def _minute(at_us: int, start_us: int) -> int:
    return min(MINUTES - 1, max(0, (at_us - start_us) // MINUTE_US))


def hour_figures(conn: sqlite3.Connection, now: datetime) -> HourFigures:
    start = (now - timedelta(minutes=MINUTES - 1)).replace(second=0, microsecond=0)
    start_us = to_us(start)
    out = HourFigures(start=start)
    out.intake = {k: [0.0] * MINUTES for k in ("triggered", "accepted", "duplicate")}
    rows = conn.execute(
        f"SELECT e.received_at, {OUTCOME} FROM inbound_events e WHERE e.received_at >= ?",  # noqa: S608
        (start_us,),
    )
    for at, outcome in rows:
        out.intake[outcome][_minute(at, start_us)] += 1

    ok, failed = [0.0] * MINUTES, [0.0] * MINUTES
    retries = [0.0] * MINUTES
    latencies: list[list[float]] = [[] for _ in range(MINUTES)]
    rows = conn.execute(
        f"SELECT attempted_at, outcome, latency_ms, attempt, {REQUEST} FROM attempts "  # noqa: S608
        "WHERE attempted_at >= ?",
        (start_us,),
    )
    for at, outcome, latency, attempt, is_request in rows:
        i = _minute(at, start_us)
        if attempt > 1:
            retries[i] += 1
        if not is_request:
            continue
        (ok if outcome == "succeeded" else failed)[i] += 1
        if latency is not None:
            latencies[i].append(latency)
    out.attempts_ok, out.attempts_failed, out.retries = ok, failed, retries
    out.success_rate = [o / (o + f) if o + f else None for o, f in zip(ok, failed, strict=True)]
    for values in latencies:
        values.sort()
    out.latency_p50 = [_rank(v, 0.50) for v in latencies]
    out.latency_p99 = [_rank(v, 0.99) for v in latencies]

    dead = [0.0] * MINUTES
    for (at,) in conn.execute(
        "SELECT dead_lettered_at FROM dead_letters WHERE dead_lettered_at >= ?", (start_us,)
    ):
        dead[_minute(at, start_us)] += 1
    out.dead_letters = dead

    everything = sorted(v for minute in latencies for v in minute)
    requests = sum(ok) + sum(failed)
    out.totals = {
        "inbound": sum(sum(v) for v in out.intake.values()),
        "triggered": sum(out.intake["triggered"]),
        "requests": requests,
        "success_rate": sum(ok) / requests if requests else None,
        "p50": _rank(everything, 0.50),
        "p99": _rank(everything, 0.99),
        "retries": sum(retries),
        "dead_letters": sum(dead),
    }
    return out


def needs_attention(sub: Any, health: dict[str, Any]) -> list[str]:
    """Why a subscription needs an operator's look; empty when it does not."""
    reasons = []
    if not sub.enabled:
        reasons.append(f"disabled{f': {sub.disabled_reason}' if sub.disabled_reason else ''}")
    if health["breaker"] != "closed":
        reasons.append(f"breaker {health['breaker'].replace('_', '-')}")
    if health["consecutive_failures"]:
        reasons.append(f"{health['consecutive_failures']} failures in a row")
    hour = next((w for w in health["windows"] if w["window"] == "1h"), None)
    if hour and hour["success_rate"] is not None and hour["success_rate"] < 0.95:
        reasons.append(f"{hour['success_rate'] * 100:.0f} % succeeded in the last hour")
    return reasons
