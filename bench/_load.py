"""The ingress benchmark's load generator: signed GitHub pushes over keep-alive connections.

A helper process of ``bench/ingress.py`` (``python -m bench.ingress load``): a closed loop
at fixed concurrency, or an open loop at a fixed rate with latency counted from each
request's scheduled send time. Over plain HTTP, or over TLS when given the CA that signed
the server's certificate (the handshakes are done before the clock starts).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import ssl
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from testkit import FIXTURES

FIXTURE = FIXTURES / "github" / "push" / "payload.json"
SECRET = "bench-github-secret"
WEBHOOK_ID = "bench-gh"
CONCURRENCY = 32
WARMUP = 1.5
DURATION = 5.0
POOL = 128
# uvloop's timers tick in whole milliseconds: a shorter sleep would spin the
# generator (and take the CPU the broker and the server need).
TICK = 0.001


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, done: Any) -> None:
        self._done = done
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.started = 0.0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, started: float) -> None:
        self.started = started
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                eol = head.find(b"\r\n", marker)
                length = int(head[marker + 15 : eol if eol >= 0 else len(head)])
            if len(self._buffer) < end + 4 + length:
                return
            status = int(head[9:12])
            del self._buffer[: end + 4 + length]
            self._done(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class _Requests:
    """Signed GitHub push deliveries; the delivery id differs per request (it is not signed)."""

    def __init__(self, port: int) -> None:
        body = FIXTURE.read_bytes()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        self._head = (
            f"POST /webhooks/{WEBHOOK_ID}/github HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            "User-Agent: GitHub-Hookshot/bench\r\n"
            "X-GitHub-Event: push\r\n"
            f"X-Hub-Signature-256: sha256={digest}\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        self._body = body
        self._prefix = uuid.uuid4().hex[:12]
        self._n = 0

    def next(self) -> bytes:
        self._n += 1
        delivery = f"X-GitHub-Delivery: {self._prefix}-{self._n:010d}\r\n\r\n".encode()
        return self._head + delivery + self._body


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(
    port: int, concurrency: int, duration: float, rate: float | None, cafile: Path | None
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    requests = _Requests(port)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    idle: deque[_Connection] = deque()
    pending: deque[float] = deque()
    measuring_from = [float("inf")]
    stop_at = [float("inf")]

    def done(conn: _Connection, status: int) -> None:
        now = time.perf_counter()
        if conn.started >= measuring_from[0] and conn.started < stop_at[0]:
            latencies.append(now - conn.started)
            statuses[status] = statuses.get(status, 0) + 1
        if now >= stop_at[0]:
            return
        if rate is None:  # closed loop: the next request goes out at once
            conn.send(requests.next(), now)
        elif pending:
            conn.send(requests.next(), pending.popleft())
        else:
            idle.append(conn)

    tls = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    size = concurrency if rate is None else POOL
    conns = []
    for _ in range(size):
        transport, conn = await loop.create_connection(
            lambda: _Connection(done),
            "127.0.0.1",
            port,
            ssl=tls,
            server_hostname="localhost" if tls else None,
        )
        conn.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(conn)
    start = time.perf_counter()
    measuring_from[0] = start + WARMUP
    stop_at[0] = start + WARMUP + duration
    if rate is None:
        for conn in conns:
            conn.send(requests.next(), time.perf_counter())
        await asyncio.sleep(WARMUP + duration)
    else:
        idle.extend(conns)
        sent = 0
        while True:
            now = time.perf_counter()
            if now >= stop_at[0]:
                break
            due = int((now - start) * rate)
            while sent < due:
                intended = start + sent / rate  # latency counts from here
                sent += 1
                if idle:
                    idle.popleft().send(requests.next(), intended)
                else:
                    pending.append(intended)
            await asyncio.sleep(TICK)
    await asyncio.sleep(0.5)  # let the last responses land
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    count = len(latencies)
    return {
        "completed": count,
        "accepted": statuses.get(202, 0),
        "statuses": {str(k): v for k, v in statuses.items()},
        "requests_per_s": count / duration,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


def load(
    port: int, concurrency: int, duration: float, rate: float | None, cafile: Path | None = None
) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_load(port, concurrency, duration, rate, cafile))
    print(json.dumps(result))
