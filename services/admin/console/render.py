"""Jinja filters of the console's templates: times, durations, JSON, outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from jinja2 import Environment

OUTCOME_CLASS = {
    "succeeded": "ok",
    "triggered": "ok",
    "completed": "ok",
    "closed": "ok",
    "failed": "bad",
    "exhausted": "bad",
    "open": "bad",
    "disabled": "warn",
    "skipped": "muted",
    "half_open": "warn",
    "duplicate": "muted",
    "accepted": "muted",
    "running": "warn",
}


def when(value: datetime | str | None) -> str:
    """``2026-01-02 03:04:05Z`` (UTC, to the second); an em dash for nothing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def pretty(value: Any) -> str:
    """JSON, indented; a string that holds JSON is parsed first."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return str(value)
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def outcome_class(value: str | None) -> str:
    return OUTCOME_CLASS.get(value or "", "muted")


def install_filters(env: Environment) -> None:
    env.filters.update(
        when=when, iso=iso, ms=ms, percent=percent, pretty=pretty, outcome_class=outcome_class
    )
