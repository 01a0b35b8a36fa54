"""Real HTTP receivers on loopback for the delivery tests, and event publishing helpers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from aiohttp import web

from shared.cloudevents import encode
from shared.kafka import create_producer
from shared.messages import LifecycleEvent, WorkflowCompleted


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class _Route:
    statuses: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    delay: float = 0.0


class Receiver:
    """Answers POSTs on any path: 200 by default, or a scripted status sequence, or never."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[Received] = []
        self._routes: dict[str, _Route] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def script(self, path: str, statuses: Iterable[int], **headers: str) -> None:
        """Answer ``path`` with these statuses in turn, then 200."""
        self._routes[path] = _Route(list(statuses), dict(headers))

    def slow(self, path: str, delay: float) -> None:
        """Answer ``path`` with 200 after ``delay`` seconds."""
        self._routes[path] = _Route(delay=delay)

    def hang(self, path: str) -> None:
        """Never answer ``path`` (until the receiver closes)."""
        self._routes[path] = _Route(hang=True)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def ids(self, path: str) -> Counter[str]:
        return Counter(r.headers["webhook-id"] for r in self.on(path))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        route = self._routes.get(request.path)
        if route is not None and route.hang:
            await self._release.wait()
            return web.Response(status=503)
        if route is not None and route.delay:
            await asyncio.sleep(route.delay)
        if route is not None and route.statuses:
            status = route.statuses.pop(0)
            return web.Response(status=status, text=f"status {status}", headers=route.headers)
        return web.Response(status=200, text="ok")


def completed(run_id: str, workflow_id: str = "wf-1", output: object = None) -> WorkflowCompleted:
    return WorkflowCompleted(
        workflow_id=workflow_id, run_id=run_id, occurred_at=datetime.now(UTC), output=output
    )


async def publish(bootstrap: str, topic: str, events: Iterable[LifecycleEvent]) -> None:
    async with create_producer(bootstrap) as producer:
        futures = []
        for event in events:
            rec = encode(event, key=event.run_id, source="/tests")
            futures.append(await producer.send(topic, rec.value, key=rec.key, headers=rec.headers))
        await asyncio.gather(*futures)
