"""Live updates: new deliveries and inbound events pushed to open pages (server-sent events).

One :class:`LiveFeed` per console serves every open stream. While any stream is open
it watches the materializer's progress (a counter, every half second), and when
records were written it reads what is new in the view once (attempts, inbound events
and runs past the row ids it has seen), renders each changed delivery and inbound
event with the page's own row templates, and hands the items to every stream, which
keeps those its page's filters match. So the cost is one small query per change,
whatever the number of open pages, and nothing runs while no page is open (the feed
stops 30 seconds after its last stream, in case a page is only reconnecting).

Each item has an id (``<epoch>.<sequence>``); the feed keeps the last 1000, so a
stream that reconnects (``Last-Event-ID``, as ``EventSource`` does by itself) gets
what it missed. A stream ends after a minute (the browser reconnects at once), so
an admin shutting down never waits long for its open pages; at most 32 streams are
open at a time (the rest get 503 and retry later).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.admin.context import AdminContext
from services.admin.deliveries import SUMMARY, _summary
from services.admin.inbound import SUMMARY as INBOUND_SUMMARY
from services.admin.inbound import _out as inbound_out

from .core import Console, Viewer

log = logging.getLogger("hookline.admin.console")

POLL = 0.5
LINGER = 30.0
STREAM_LIFETIME = 60.0
KEEPALIVE = 15.0
MAX_STREAMS = 32
BACKLOG = 1000
BATCH = 500
FILTER_KEYS = (
    "subscription_id", "run_id", "outcome", "event_type", "workflow_id", "webhook_id",
    "delivery_id",
)  # fmt: skip


@dataclass
class Item:
    seq: int
    kind: str  # delivery | inbound
    keys: dict[str, Any]
    data: dict[str, Any]


@dataclass
class Marks:
    attempts: int = 0
    inbound: int = 0
    runs: int = 0


def _max_rowids(conn: sqlite3.Connection) -> Marks:
    def top(table: str) -> int:
        return int(conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0])  # noqa: S608

    return Marks(top("attempts"), top("inbound_events"), top("runs"))


def changes(
    conn: sqlite3.Connection, marks: Marks
) -> tuple[Marks, list[dict[str, Any]], list[dict[str, Any]]]:
    """What changed past ``marks``: the deliveries and the inbound events."""
    new = Marks(marks.attempts, marks.inbound, marks.runs)
    ids: list[str] = []
    for rowid, delivery in conn.execute(
        "SELECT rowid, delivery_id FROM attempts WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (marks.attempts, BATCH),
    ):
        new.attempts = rowid
        if delivery not in ids:
            ids.append(delivery)
    deliveries: list[dict[str, Any]] = []
    if ids:
        marks_sql = ", ".join("?" for _ in ids)
        cursor = conn.execute(
            f"SELECT {SUMMARY} FROM deliveries WHERE delivery_id IN ({marks_sql})",  # noqa: S608
            ids,
        )
        cursor.row_factory = sqlite3.Row
        deliveries = [_summary(r, None) for r in cursor.fetchall()]
    event_ids: list[str] = []
    for rowid, event_id in conn.execute(
        "SELECT rowid, id FROM inbound_events WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (marks.inbound, BATCH),
    ):
        new.inbound = rowid
        event_ids.append(event_id)
    for rowid, event_id in conn.execute(
        "SELECT rowid, inbound_event_id FROM runs WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (marks.runs, BATCH),
    ):
        new.runs = rowid  # a run started: its inbound event's outcome changed
        if event_id not in event_ids:
            event_ids.append(event_id)
    inbound: list[dict[str, Any]] = []
    if event_ids:
        cursor = conn.execute(
            f"SELECT {INBOUND_SUMMARY} FROM inbound_events e WHERE e.id IN "  # noqa: S608
            f"({', '.join('?' for _ in event_ids)}) ORDER BY e.received_at",
            event_ids,
        )
        cursor.row_factory = sqlite3.Row
        inbound = [inbound_out(r) for r in cursor.fetchall()]
    return new, deliveries, inbound


@dataclass(eq=False)
class Stream:
    filters: dict[str, str]
    queue: asyncio.Queue[Item | None] = field(default_factory=lambda: asyncio.Queue(256))

    def wants(self, item: Item) -> bool:
        return all(str(item.keys.get(k)) == v for k, v in self.filters.items())

    def offer(self, item: Item) -> None:
        if self.wants(item):
            try:
                self.queue.put_nowait(item)
            except asyncio.QueueFull:  # a stalled page: end its stream, it reconnects
                self.queue = asyncio.Queue(1)
                self.queue.put_nowait(None)


class LiveFeed:
    """Watches the view while streams are open and hands them what is new."""

    def __init__(self, ctx: AdminContext, env: Environment) -> None:
        self._ctx = ctx
        self._env = env
        self._streams: set[Stream] = set()
        self._task: asyncio.Task[None] | None = None
        self._backlog: deque[Item] = deque(maxlen=BACKLOG)
        self._seq = itertools.count(1)
        self.epoch = format(int(time.time() * 1000), "x")

    @property
    def streams(self) -> int:
        return len(self._streams)

    @contextlib.asynccontextmanager
    async def stream(
        self, filters: Mapping[str, str], last_id: str | None
    ) -> AsyncIterator[Stream]:
        stream = Stream(dict(filters))
        for item in self._missed(last_id):
            stream.offer(item)
        self._streams.add(stream)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console-live")
        try:
            yield stream
        finally:
            self._streams.discard(stream)

    def _missed(self, last_id: str | None) -> list[Item]:
        epoch, _, seq = (last_id or "").partition(".")
        if epoch != self.epoch or not seq.isdigit():
            return []
        return [item for item in self._backlog if item.seq > int(seq)]

    def item_id(self, item: Item) -> str:
        return f"{self.epoch}.{item.seq}"

    async def _run(self) -> None:
        db = self._ctx.view_db
        marks = await db.read(_max_rowids)
        seen = -1
        idle_since: float | None = None
        while True:
            if self._streams:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > LINGER:
                return
            applied = self._ctx.materializer.records_applied
            if applied != seen:
                seen = applied
                try:
                    marks, deliveries, inbound = await db.read(partial(changes, marks=marks))
                except sqlite3.Error as exc:
                    log.warning("live feed read failed", extra={"error": repr(exc)})
                else:
                    self._publish(deliveries, inbound)
            await asyncio.sleep(POLL)

    def _publish(self, deliveries: list[dict[str, Any]], inbound: list[dict[str, Any]]) -> None:
        row = self._env.get_template("_delivery_row.html")
        event_row = self._env.get_template("_event_row.html")
        items = []
        for d in deliveries:
            keys = {k: d.get(k) for k in FILTER_KEYS if k in d}
            keys["delivery_id"] = d["id"]
            data = {"id": d["id"], "row": row.render(d=d)}
            items.append(Item(next(self._seq), "delivery", keys, data))
        for e in inbound:
            keys = {"webhook_id": e["webhook_id"], "event_type": e["event_type"]}
            data = {"id": e["id"], "row": event_row.render(e=e)}
            items.append(Item(next(self._seq), "inbound", keys, data))
        for item in items:
            self._backlog.append(item)
            for stream in list(self._streams):
                stream.offer(item)


async def live(console: Console, request: Request, viewer: Viewer) -> Response:
    """``GET /console/live?<filters>``: ``text/event-stream`` of ``delivery`` and ``inbound``."""
    feed: LiveFeed = console.live
    if feed.streams >= MAX_STREAMS:
        return Response("too many live pages open", 503, headers={"Retry-After": "5"})
    filters = {k: v[:200] for k in FILTER_KEYS if (v := request.query_params.get(k, "").strip())}
    last_id = request.headers.get("last-event-id")

    async def events() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        ends = time.monotonic() + STREAM_LIFETIME
        async with feed.stream(filters, last_id) as stream:
            while (left := ends - time.monotonic()) > 0:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), min(KEEPALIVE, left))
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if item is None:
                    return
                data = orjson.dumps(item.data).decode()
                yield f"id: {feed.item_id(item)}\nevent: {item.kind}\ndata: {data}\n\n".encode()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
