"""HTTP/1.1 over a socket of the test's own: to trickle a body, pick the source address,
keep a connection open across a certificate change, or serve the ingress for real."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette

from services.ingress import create_ingress_app
from services.ingress.main import public_server
from shared.health import QuietServer
from shared.settings import Settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Connection:
    """One client connection; requests are written as given, answers parsed one at a time.

    What the server sends is read as it comes, by a task of its own: a write that fails
    once the server has closed (a broken pipe) must not hide an answer already received.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.ssl_object = writer.get_extra_info("ssl_object")
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self.closed = asyncio.Event()
        self._reading = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(65536):
                self._buffer += chunk
                self._arrived.set()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.closed.set()
            self._arrived.set()

    @classmethod
    async def open(
        cls,
        port: int,
        *,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        source: str | None = None,
    ) -> Connection:
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=tls,
            local_addr=(source, 0) if source else None,
            server_hostname="localhost" if tls else None,
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes) -> bool:
        """Send ``data`` if the server still takes it; False once it has closed."""
        if self.closed.is_set() or self.writer.is_closing():
            return False
        try:
            await self.send(data)
        except (ConnectionError, ssl.SSLError):
            return False
        return True

    async def _until(self, ready: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not ready():
                if self.closed.is_set():
                    raise ConnectionError("the server closed the connection before answering")
                self._arrived.clear()
                await self._arrived.wait()

    async def answer(self, timeout: float = 30) -> Answer:
        await self._until(lambda: b"\r\n\r\n" in self._buffer, timeout)
        end = self._buffer.index(b"\r\n\r\n")
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        size = int(headers.get("content-length", "0"))
        await self._until(lambda: len(self._buffer) >= end + 4 + size, timeout)
        body = bytes(self._buffer[end + 4 : end + 4 + size])
        del self._buffer[: end + 4 + size]
        return Answer(status, headers, body)

    async def closed_by_server(self, timeout: float = 30) -> bool:
        """True when the server closes the connection (EOF or reset) within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.closed.wait()
        except TimeoutError:
            return False
        return True

    @property
    def unread(self) -> bytes:
        return bytes(self._buffer)

    def peer_certificate(self) -> bytes:
        der: bytes = self.ssl_object.getpeercert(binary_form=True)
        return der

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading


def request(
    path: str, body: bytes, headers: dict[str, str], *, content_length: int | None = None
) -> bytes:
    """A POST's bytes; ``content_length`` may promise more than ``body`` holds."""
    lines = [f"POST {path} HTTP/1.1", "Host: ingress.test"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Served:
    port: int
    app: Starlette
    server: QuietServer


@contextlib.asynccontextmanager
async def served_ingress(settings: Settings, **overrides: Any) -> AsyncIterator[Served]:
    """The ingress app on the public port's real server (``main.public_server``), on loopback."""
    settings = settings.model_copy(
        update={"host": "127.0.0.1", "ingress_port": free_port(), **overrides}
    )
    app = create_ingress_app(settings)
    server = public_server(app, settings)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(60):
            while not server.started:
                if task.done():
                    task.result()
                    raise AssertionError("the ingress stopped before it started")
                await asyncio.sleep(0.02)
        yield Served(settings.ingress_port, app, server)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception, SystemExit):
            await asyncio.wait_for(task, 30)


class Forwarder:
    """A reverse proxy on loopback: listens on ``address``, connects upstream from it, and
    appends its peer to ``X-Forwarded-For``, as an Ingress controller or a load balancer
    does. One request per connection (it asks upstream to close after the answer)."""

    def __init__(self, address: str, upstream: tuple[str, int]) -> None:
        self.address, self.upstream = address, upstream
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Forwarder:
        self._server = await asyncio.start_server(self._handle, self.address, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            lines, forwarded, length = [head[0]], [], 0
            for line in head[1:]:
                if not line:
                    continue
                name, _, value = line.partition(":")
                if name.strip().lower() == "x-forwarded-for":
                    forwarded.append(value.strip())
                elif name.strip().lower() != "connection":
                    lines.append(line)
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            lines.append(f"X-Forwarded-For: {', '.join([*forwarded, peer])}")
            lines.append("Connection: close")
            up_reader, up_writer = await asyncio.open_connection(
                *self.upstream, local_addr=(self.address, 0)
            )
            up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            writer.write(await up_reader.read())
            up_writer.close()
            await writer.drain()
        finally:
            writer.close()
