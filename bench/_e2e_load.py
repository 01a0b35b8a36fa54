"""The e2e benchmark's traffic: the provider posting signed GitHub ``push`` deliveries
over keep-alive connections, the subscriber noting when each run's events arrive, and the
loops that drive them (a burst, an open loop at a fixed rate).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from bench._load import FIXTURE
from services.dispatcher._matching import run_id_for

SECRET = "bench-e2e-secret"
WEBHOOK_ID = "bench-e2e"
WORKFLOW_ID = "wf-e2e"
BURST = int(os.environ.get("HOOKLINE_BENCH_E2E_BURST", "1500"))
DRAIN_TIMEOUT = 60.0


@dataclass
class Webhook:
    """One provider delivery and what became of it (wall-clock seconds)."""

    delivery: str
    run_id: str
    posted: float = 0.0
    answered: float | None = None
    status: int | None = None
    inbound: float | None = None  # the inbound record's timestamp
    command: float | None = None  # the run's command record's timestamp
    started_event: float | None = None  # workflow.started's record timestamp
    started: float | None = None  # the receiver got workflow.started
    completed: float | None = None  # the receiver got workflow.completed


@dataclass
class Subscriber:
    """The receiver's side: when each run's events arrived."""

    started: dict[str, float] = field(default_factory=dict)
    completed: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        at = time.time()
        body = orjson.loads(await request.read())
        run_id = body["data"]["run_id"]
        if body["type"] == "workflow.started":
            self.started.setdefault(run_id, at)
        elif body["type"] == "workflow.completed":
            self.completed.setdefault(run_id, at)
            self.changed.set()
        return web.Response(text="ok")


# -- the provider ---------------------------------------------------------------------------


class _Post(asyncio.Protocol):
    """One keep-alive connection, one request at a time; answers reported to ``done``."""

    def __init__(self, done: Any, lost: Any) -> None:
        self._done = done
        self._lost = lost
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.webhook: Webhook | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        marker = head.find(b"content-length:")
        eol = head.find(b"\r\n", marker)
        length = int(head[marker + 15 : eol if eol >= 0 else len(head)]) if marker >= 0 else 0
        if len(self._buffer) < end + 4 + length:
            return
        del self._buffer[: end + 4 + length]
        webhook, self.webhook = self.webhook, None
        assert webhook is not None
        webhook.answered, webhook.status = time.time(), int(head[9:12])
        self._done(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._lost(self)


class Provider:
    """Signed GitHub ``push`` deliveries over a pool of keep-alive connections."""

    def __init__(self, port: int) -> None:
        body = FIXTURE.read_bytes()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        self._head = (
            f"POST /webhooks/{WEBHOOK_ID}/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
            f"X-Hub-Signature-256: sha256={digest}\r\nContent-Length: {len(body)}\r\n"
        ).encode()
        self._body = body
        self._port = port
        self._idle: list[_Post] = []
        self._all: set[_Post] = set()
        self._closing = False
        self._waiting: list[Webhook] = []
        self._prefix = uuid.uuid4().hex[:10]
        self._n = 0
        self.sent: list[Webhook] = []

    async def connect(self, count: int) -> None:
        for _ in range(count):
            self._idle.append(await self._connect())

    async def _connect(self) -> _Post:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Post(self._answered, self._lost), "127.0.0.1", self._port
        )
        self._all.add(conn)
        return conn

    def _lost(self, conn: _Post) -> None:
        # The server closes keep-alive connections left idle: a new one takes its place,
        # and a request it carried unanswered goes again (its clock still running).
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        if self._closing:
            return
        webhook, conn.webhook = conn.webhook, None
        if webhook is not None:
            self._waiting.insert(0, webhook)
        task = asyncio.ensure_future(self._connect())
        task.add_done_callback(self._replaced)

    def _replaced(self, task: asyncio.Future[_Post]) -> None:
        if task.exception() is None:
            self._answered(task.result())

    def close(self) -> None:
        self._closing = True
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()

    def post(self, at: float | None = None) -> Webhook:
        """A new delivery, sent now on an idle connection or queued for the next one;
        its clock starts at ``at`` (its scheduled moment) or now."""
        self._n += 1
        delivery = f"{self._prefix}-{self._n:08d}"
        webhook = Webhook(delivery, run_id_for(WEBHOOK_ID, delivery, WORKFLOW_ID))
        webhook.posted = at if at is not None else time.time()
        self.sent.append(webhook)
        if self._idle:
            self._send(self._idle.pop(), webhook)
        else:
            self._waiting.append(webhook)
        return webhook

    def _send(self, conn: _Post, webhook: Webhook) -> None:
        conn.webhook = webhook
        assert conn.transport is not None
        head = self._head + f"X-GitHub-Delivery: {webhook.delivery}\r\n\r\n".encode()
        conn.transport.write(head + self._body)

    def _answered(self, conn: _Post) -> None:
        if self._waiting:
            self._send(conn, self._waiting.pop(0))
        else:
            self._idle.append(conn)


# -- the measurements -----------------------------------------------------------------------


async def _until_completed(
    subscriber: Subscriber, webhooks: list[Webhook], timeout: float
) -> float:
    """Wait until every run's ``workflow.completed`` arrived; the moment the last did."""
    deadline = time.monotonic() + timeout
    wanted = {w.run_id for w in webhooks}
    while not wanted <= subscriber.completed.keys():
        left = deadline - time.monotonic()
        if left <= 0:
            missing = len(wanted - subscriber.completed.keys())
            statuses = Counter(w.status for w in webhooks)
            started = len(wanted & subscriber.started.keys())
            raise TimeoutError(
                f"{missing} of {len(wanted)} runs not completed in {timeout}s "
                f"(answers {dict(statuses)}, {started} started)"
            )
        subscriber.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscriber.changed.wait(), min(left, 1.0))
    return max(subscriber.completed[w.run_id] for w in webhooks)


async def measure_capacity(provider: Provider, subscriber: Subscriber) -> float:
    """Webhooks per second from a burst's first POST to its last ``workflow.completed``."""
    began = time.time()
    burst = [provider.post() for _ in range(BURST)]
    last = await _until_completed(subscriber, burst, DRAIN_TIMEOUT + BURST / 50)
    return BURST / (last - began)


async def post_at_rate(provider: Provider, rate: float, seconds: float) -> list[Webhook]:
    """An open loop: webhook ``i`` is due at ``start + i / rate``, its clock starts then."""
    start = time.time()
    posted: list[Webhook] = []
    due = 0
    while True:
        now = time.time()
        if now - start >= seconds:
            return posted
        while due < int((now - start) * rate):
            posted.append(provider.post(at=start + due / rate))
            due += 1
        await asyncio.sleep(0.001)
