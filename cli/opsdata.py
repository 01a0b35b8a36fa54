"""``hookline deliveries|events|replay|recover|dead-letters``: the operations data from a terminal.

Each command is one or two requests to the admin API at ``HOOKLINE_ADMIN_URL``
(default ``http://127.0.0.1:$HOOKLINE_ADMIN_PORT``) with the first token of
``HOOKLINE_ADMIN_TOKEN``. Output is a table for people, or the API's JSON with
``--json``. Exit status: 0 done, 1 the API refused (its error printed), 2 the API
could not be reached or used.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from shared.errors import ConfigurationError, HooklineError
from shared.settings import Settings

if TYPE_CHECKING:
    import httpx

COLUMNS: dict[str, tuple[str, ...]] = {
    "deliveries": ("id", "subscription_id", "event_type", "outcome", "attempt_count",
                   "status_code", "last_attempt_at"),
    "attempts": ("attempt", "outcome", "status_code", "latency_ms", "error", "attempted_at"),
    "events": ("id", "webhook_id", "event_type", "provider_event_id", "outcome",
               "verification", "received_at"),
    "runs": ("run_id", "workflow_id", "status", "replay_id", "queued_at"),
    "dead-letters": ("id", "source_topic", "reason", "size", "dead_lettered_at", "retried_at"),
}  # fmt: skip


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


class Api:
    def __init__(self, settings: Settings) -> None:
        import httpx  # here, so that building ``hookline``'s parser does not load it

        tokens = [t.get_secret_value() for t in settings.admin_token if t.get_secret_value()]
        if not tokens:
            raise ConfigurationError("this command needs HOOKLINE_ADMIN_TOKEN (an admin API token)")
        default = f"http://127.0.0.1:{settings.admin_port}"
        self.url = os.environ.get("HOOKLINE_ADMIN_URL", default).rstrip("/")
        self.client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=60
        )

    def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        import httpx

        try:
            return self.client.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise HooklineError(f"cannot reach the admin API at {self.url}: {exc}") from exc


def _params(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    api = Api(settings)
    with api.client:
        method, path, options, kind = _request(args)
        answer = api.call(method, path, **options)
        if answer.status_code >= 400:
            print(f"hookline: {answer.status_code} {answer.text}", file=sys.stderr)
            return 1
        data = answer.json()
        if args.json:
            out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            out.write(_human(kind, data) + "\n")
    return 0


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any], str]:
    """The request a command makes, and how its answer is shown."""
    group, action = args.command, getattr(args, "action", None)
    common = ("limit", "since", "until", "cursor")
    if group == "deliveries":
        if action == "list":
            names: tuple[str, ...] = (
                "subscription_id",
                "outcome",
                "event_type",
                "workflow_id",
                "run_id",
                *common,
            )
            return "GET", "/v1/deliveries", {"params": _params(args, names)}, "deliveries"
        if action == "show":
            return "GET", f"/v1/deliveries/{args.id}", {}, "delivery"
        return "POST", f"/v1/deliveries/{args.id}/redeliver", {}, "object"
    if group == "events":
        if action == "list":
            names = ("webhook_id", "provider", "event_type", "provider_event_id", "outcome",
                     "replay_id", *common)  # fmt: skip
            return "GET", "/v1/inbound-events", {"params": _params(args, names)}, "events"
        return "GET", f"/v1/inbound-events/{args.id}", {}, "event"
    if group == "dead-letters":
        if action == "list":
            names = ("source_topic", "reason", *common)
            return "GET", "/v1/dead-letters", {"params": _params(args, names)}, "dead-letters"
        headers = {"Idempotency-Key": args.key} if args.key else {}
        return "POST", f"/v1/dead-letters/{args.id}/retry", {"headers": headers}, "object"
    body = _params(args, ("id", "since", "until"))
    if group == "replay":
        if args.event_type:
            body["event_types"] = args.event_type
        return "POST", f"/v1/webhooks/{args.webhook}/replay", {"json": body}, "object"
    return "POST", f"/v1/subscriptions/{args.subscription}/recover", {"json": body}, "object"


def _human(kind: str, data: dict[str, Any]) -> str:
    if kind in ("deliveries", "events", "dead-letters"):
        text = table(data["items"], COLUMNS[kind])
        if data.get("next_cursor"):
            text += f"\n(more: --cursor {data['next_cursor']})"
        return text
    if kind == "delivery":
        head = _fields(data, exclude=("attempts", "body"))
        return f"{head}\n\n{table(data['attempts'], COLUMNS['attempts'])}"
    if kind == "event":
        head = _fields(data, exclude=("headers", "payload", "runs"))
        headers = "\n".join(f"  {k}: {v}" for k, v in data["headers"].items())
        payload = orjson.dumps(data["payload"]).decode()[:2000]
        runs = table(data["runs"], COLUMNS["runs"]) if data["runs"] else "(no runs)"
        return f"{head}\nheaders:\n{headers}\npayload: {payload}\n\n{runs}"
    return _fields(data)


def _fields(data: dict[str, Any], exclude: Sequence[str] = ()) -> str:
    return "\n".join(f"{k}: {v}" for k, v in data.items() if k not in exclude and v is not None)


def add_parsers(sub: Any, func: Any) -> None:
    """The commands, on ``hookline``'s sub-parsers; each calls ``func``."""

    def common(p: argparse.ArgumentParser, listing: bool = False) -> None:
        p.add_argument("--json", action="store_true", help="print the API's JSON")
        if listing:
            p.add_argument("--since", help="RFC 3339 time")
            p.add_argument("--until", help="RFC 3339 time")
            p.add_argument("--limit", type=int, help="page size (1-500)")
            p.add_argument("--cursor", help="the next page, from a previous answer")
        p.set_defaults(func=func)

    deliveries = sub.add_parser("deliveries", help="outbound deliveries and their attempts")
    d = deliveries.add_subparsers(dest="action", required=True)
    dl = d.add_parser("list", help="newest first")
    for flag in ("subscription-id", "outcome", "event-type", "workflow-id", "run-id"):
        dl.add_argument(f"--{flag}")
    common(dl, listing=True)
    for action in ("show", "redeliver"):
        p = d.add_parser(action, help=f"{action} one delivery")
        p.add_argument("id")
        common(p)

    events = sub.add_parser("events", help="inbound events: what arrived, what it started")
    e = events.add_subparsers(dest="action", required=True)
    el = e.add_parser("list", help="newest first")
    for flag in ("webhook-id", "provider", "event-type", "provider-event-id", "outcome",
                 "replay-id"):  # fmt: skip
        el.add_argument(f"--{flag}")
    common(el, listing=True)
    es = e.add_parser("show", help="one event in full")
    es.add_argument("id")
    common(es)

    replay = sub.add_parser("replay", help="dispatch a webhook's inbound events again")
    replay.add_argument("webhook")
    replay.add_argument("--since", required=True, help="RFC 3339 time")
    replay.add_argument("--until", help="RFC 3339 time")
    replay.add_argument("--event-type", action="append", help="a pattern; may repeat")
    replay.add_argument("--id", help="the request id (the same id is the same replay)")
    common(replay)

    recover = sub.add_parser("recover", help="send again what failed for a subscription")
    recover.add_argument("subscription")
    recover.add_argument("--since", required=True, help="RFC 3339 time")
    recover.add_argument("--until", help="RFC 3339 time")
    recover.add_argument("--id", help="the request id (the same id is the same recovery)")
    common(recover)

    dead = sub.add_parser("dead-letters", help="records no service could use")
    x = dead.add_subparsers(dest="action", required=True)
    xl = x.add_parser("list", help="newest first")
    xl.add_argument("--source-topic")
    xl.add_argument("--reason", help="the error code")
    common(xl, listing=True)
    xr = x.add_parser("retry", help="put one back on its source topic")
    xr.add_argument("id")
    xr.add_argument("--key", help="Idempotency-Key: the same key retries once")
    common(xr)
