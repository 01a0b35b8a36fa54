"""The public port's protocol against slow and idle clients, on a bare app (no Kafka):
a request's headers and body have deadlines (408, then the connection closes), an idle
keep-alive connection closes, and connections past the bound are answered 503."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.ingress._edge import TIMEOUT_EXTENSION, EdgeLimits, edge_protocol
from shared.health import quiet_server
from tests.ingress.rawhttp import Connection, free_port, request

HEADERS = 0.6
BODY = 0.8
KEEP_ALIVE = 0.5
MARGIN = 2.0  # a loaded 2-core machine; the deadlines are what is asserted, not speed


class BareApp:
    """Reads the body on /read (recording what ``receive`` said), answers /ignore unread."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.scopes.append(scope)
        if scope["path"] == "/read":
            while True:
                message = await receive()
                self.received.append(message)
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
        )
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def edge_server(app: Any, max_connections: int = 100) -> AsyncIterator[int]:
    port = free_port()
    limits = EdgeLimits(header_timeout=HEADERS, body_timeout=BODY, max_connections=max_connections)
    server = quiet_server(
        app,
        "127.0.0.1",
        port,
        http=edge_protocol(limits),
        loop="none",
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE,
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_trickled_body_is_answered_408_at_its_deadline_and_the_app_told() -> None:
    app = BareApp()
    before = _metric("hookline_ingress_request_timeouts_total", phase="body")
    async with edge_server(app) as port:
        conn = await Connection.open(port)
        started = time.monotonic()
        await conn.send(request("/read", b"x", {}, content_length=100_000))
        # One byte every 0.1 s, far past the deadline if it were allowed.
        for _ in range(30):
            if not await conn.trickle(b"x"):
                break
            await asyncio.sleep(0.1)
        answer = await conn.answer()
        elapsed = time.monotonic() - started
        assert await conn.closed_by_server(MARGIN)
    assert answer.status == 408
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "https://hookline.dev/problems/request_timeout"
    assert answer.headers["connection"] == "close"
    assert BODY - 0.1 <= elapsed <= BODY + MARGIN
    # The app's pending receive() was woken with a disconnect, and told why.
    assert app.received[-1] == {"type": "http.disconnect"}
    assert app.scopes[0]["extensions"][TIMEOUT_EXTENSION]["phase"] == "body"
    assert _metric("hookline_ingress_request_timeouts_total", phase="body") == before + 1


async def test_headers_that_do_not_arrive_in_time_get_408_and_the_connection_closes() -> None:
    before = _metric("hookline_ingress_request_timeouts_total", phase="headers")
    async with edge_server(BareApp()) as port:
        trickling = await Connection.open(port)
        silent = await Connection.open(port)
        started = time.monotonic()
        await trickling.send(b"POST /read HTTP/1.1\r\nHost: x\r\n")
        answer = await trickling.answer()
        assert time.monotonic() - started <= HEADERS + MARGIN
        assert answer.status == 408
        assert "headers" in answer.json()["detail"]
        assert await trickling.closed_by_server(MARGIN)
        # A connection that never sent a byte is closed without an answer.
        assert await silent.closed_by_server(HEADERS + MARGIN)
        assert silent.unread == b""
    assert _metric("hookline_ingress_request_timeouts_total", phase="headers") == before + 2


async def test_a_body_still_coming_after_the_answer_is_closed_at_its_deadline() -> None:
    async with edge_server(BareApp()) as port:
        conn = await Connection.open(port)
        await conn.send(request("/ignore", b"x", {}, content_length=100_000))
        assert (await conn.answer()).status == 200
        started = time.monotonic()
        for _ in range(int((BODY + MARGIN) / 0.1)):
            # uvicorn's keep-alive timer alone would restart on each byte, for ever.
            if not await conn.trickle(b"x"):
                break
            await asyncio.sleep(0.1)
        assert await conn.closed_by_server(MARGIN)
        assert time.monotonic() - started <= BODY + MARGIN


async def test_an_idle_keep_alive_connection_closes_and_a_busy_one_stays() -> None:
    async with edge_server(BareApp()) as port:
        busy, idle = await Connection.open(port), await Connection.open(port)
        for conn in (busy, idle):
            await conn.send(request("/read", b"{}", {}))
            assert (await conn.answer()).status == 200
        # Requests on the busy one, each inside the idle timeout, span three timeouts.
        deadline = time.monotonic() + 3 * KEEP_ALIVE
        while time.monotonic() < deadline:
            await asyncio.sleep(KEEP_ALIVE / 3)
            await busy.send(request("/read", b"{}", {}))
            assert (await busy.answer()).status == 200
        assert await idle.closed_by_server(0)


async def test_connections_past_the_bound_are_answered_503_and_closed() -> None:
    before = _metric("hookline_ingress_connections_refused_total")
    async with edge_server(BareApp(), max_connections=2) as port:
        first, second = await Connection.open(port), await Connection.open(port)
        for conn in (first, second):
            await conn.send(request("/read", b"{}", {}))
            assert (await conn.answer()).status == 200
        opened = _metric("hookline_ingress_open_connections")
        assert opened >= 2
        third = await Connection.open(port)
        await third.send(request("/read", b"{}", {}))
        refused = await third.answer()
        assert refused.status == 503
        assert refused.json()["type"] == "https://hookline.dev/problems/unavailable"
        assert refused.headers["retry-after"] == "1"
        assert await third.closed_by_server(MARGIN)
        # The admitted ones keep being served; one gone, a new one is admitted.
        await first.send(request("/read", b"{}", {}))
        assert (await first.answer()).status == 200
        await second.close()
        async with asyncio.timeout(MARGIN):
            while _metric("hookline_ingress_open_connections") >= opened:
                await asyncio.sleep(0.01)
        fourth = await Connection.open(port)
        await fourth.send(request("/read", b"{}", {}))
        assert (await fourth.answer()).status == 200
    assert _metric("hookline_ingress_connections_refused_total") == before + 1


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_the_408_answers_are_problem_documents_that_close(phase: str) -> None:
    protocol = edge_protocol(EdgeLimits(header_timeout=3, body_timeout=7, max_connections=1))
    raw: bytes = protocol._answers[phase]  # type: ignore[attr-defined]
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head and f"content-length: {len(body)}".encode() in head
    assert (b"3 s" if phase == "headers" else b"7 s") in body
