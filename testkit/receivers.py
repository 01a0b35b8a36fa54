"""Real HTTP receivers on loopback for the delivery tests, and event publishing helpers."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

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
    status: int = 200  # what it was answered (0: never)

    @property
    def event(self) -> dict[str, Any]:
        """The delivered body, parsed."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class _Route:
    statuses: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    delay: float = 0.0
    choose: Callable[[Received], int] | None = None


class Receiver:
    """Answers POSTs on any path: 200 by default, or a scripted status sequence, or never.

    With ``ssl_context`` it answers over TLS (``name`` is then the host its URLs carry:
    the name its certificate is for, which a test resolver maps to ``host``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        ssl_context: ssl.SSLContext | None = None,
        name: str | None = None,
    ) -> None:
        self.host = host
        self.port = 0
        self.requests: list[Received] = []
        self._ssl = ssl_context
        self._name = name
        self._routes: dict[str, _Route] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self._ssl)
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
        host = self._name or (f"[{self.host}]" if ":" in self.host else self.host)
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def answer(self, path: str, choose: Callable[[Received], int]) -> None:
        """Answer ``path`` with whatever ``choose`` says of each request."""
        self._routes[path] = _Route(choose=choose)

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
        received = Received(request.path, dict(request.headers), body, time.monotonic())
        route = self._routes.get(request.path)
        if route is not None and route.hang:
            self.requests.append(replace(received, status=0))
            await self._release.wait()
            return web.Response(status=503)
        if route is not None and route.choose is not None:
            status = route.choose(received)
            self.requests.append(replace(received, status=status))
            return web.Response(status=status, text=f"status {status}")
        if route is not None and route.statuses:
            status = route.statuses.pop(0)
            self.requests.append(replace(received, status=status))
            return web.Response(status=status, text=f"status {status}", headers=route.headers)
        self.requests.append(received)
        if route is not None and route.delay:
            await asyncio.sleep(route.delay)
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
