"""The long-lived HTTP clients that send every attempt.

One client sends for every subscription; a subscription with a client certificate
gets a client of its own (its TLS context holds the certificate; at most
``keep_clients`` of them, the least recently used closed first). All go through the
guarded transport, and through the egress proxy when there is one.

Lifecycle: ``async with Sender(...)`` opens the client (explicit pool limits and
timeouts, no redirects, no environment proxies); :meth:`Sender.send` never raises
for anything the network or the receiver does: it returns an :class:`HttpOutcome`
with a status code or an error class; leaving the block closes the pools.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httpx

from services.delivery._guard import DestinationGuard, DestinationRefused
from services.delivery._schedule import parse_retry_after
from services.delivery._signing import USER_AGENT
from services.delivery._tls import receiver_context
from services.delivery._transport import TransportKind, guarded_transport
from shared._httpx_internals import without_cookie_jar

EXCERPT_BYTES = 4096
_URL_CACHE = 4096
_SPENT = httpx.ByteStream(b"")


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    status_code: int | None
    error: str | None
    latency_ms: float
    excerpt: str | None = None
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """POSTs bodies through a guarded transport; one instance per service."""

    def __init__(
        self,
        guard: DestinationGuard,
        *,
        max_connections: int = 256,
        connect_timeout: float = 3.0,
        request_timeout: float = 10.0,
        transport: TransportKind = "httpx",
        proxy: str | None = None,
        ca_file: Path | None = None,
        per_client_connections: int = 16,
        keep_clients: int = 256,
    ) -> None:
        self._guard = guard
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._kind: TransportKind = transport
        self._proxy = proxy
        self._ca_file = ca_file
        self._per_client = per_client_connections
        self._keep_clients = keep_clients
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        context = receiver_context(ca_file) if ca_file is not None else None
        self._client = self._new_client(limits, context)
        # Clients of the subscriptions with a client certificate, by that certificate.
        self._own: OrderedDict[tuple[str, str, str], httpx.AsyncClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        # Per subscription URL: the parsed httpx URL and the (host, port) to check, once.
        self._targets: dict[str, tuple[httpx.URL, str, int]] = {}

    def _new_client(
        self, limits: httpx.Limits, context: ssl.SSLContext | None
    ) -> httpx.AsyncClient:
        transport = guarded_transport(
            self._guard, limits, self._kind, ssl_context=context, proxy=self._proxy
        )
        # No cookie jar: one receiver's cookies are nobody's business, and extracting
        # them cost a visible share of each request (see shared._httpx_internals).
        return without_cookie_jar(
            httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(
                    self._request_timeout, connect=self._connect_timeout, pool=self._request_timeout
                ),
                follow_redirects=False,
                trust_env=False,
                headers={"user-agent": USER_AGENT},
            )
        )

    def client_for(self, key: tuple[str, str, str], context: ssl.SSLContext) -> httpx.AsyncClient:
        """The client that presents the certificate ``context`` holds (``key`` names it)."""
        client = self._own.get(key)
        if client is not None:
            self._own.move_to_end(key)
            return client
        limits = httpx.Limits(
            max_connections=self._per_client,
            max_keepalive_connections=self._per_client,
            keepalive_expiry=30.0,
        )
        client = self._own[key] = self._new_client(limits, context)
        while len(self._own) > self._keep_clients:
            _, old = self._own.popitem(last=False)
            task = asyncio.create_task(old.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return client

    @property
    def request_timeout(self) -> float:
        return self._request_timeout

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for client in self._own.values():
            await client.aclose()
        self._own.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self._client.__aexit__(et, e, tb)

    def _target(self, url: str) -> tuple[httpx.URL, str, int]:
        """The parsed URL and its (host, port); a URL the scheme check refuses is not kept."""
        hit = self._targets.get(url)
        if hit is None:
            self._guard.check_url(url)
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            hit = (httpx.URL(url), parts.hostname or "", port)
            if len(self._targets) >= _URL_CACHE:
                self._targets.clear()
            self._targets[url] = hit
        return hit

    async def send(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        scope: asyncio.Timeout | None = None,
        *,
        timeout: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> HttpOutcome:
        """POST ``body``; with ``scope`` the caller owns the deadline (it must be armed).

        A ``scope`` that expires raises :class:`TimeoutError` out of the caller's block
        rather than returning an outcome, so the caller can tell whose deadline it was.
        ``timeout``: a subscription's own request timeout; ``client``: its own client.
        """
        started = time.perf_counter()
        try:
            target, host, port = self._target(url)
            # Some transports skip resolution for IP literals; check them here as well.
            await self._guard.connect_addresses(host, port)
            if scope is None:
                async with asyncio.timeout(timeout or self._request_timeout):
                    status, excerpt, retry_after = await self._post(
                        target, headers, body, timeout, client
                    )
            elif timeout is None and client is None:
                status, excerpt, retry_after = await self._post(target, headers, body)
            else:
                status, excerpt, retry_after = await self._post(
                    target, headers, body, timeout, client
                )
        except DestinationRefused as exc:
            return self._failed(started, f"destination_refused: {exc.reason}")
        except (TimeoutError, httpx.TimeoutException):
            return self._failed(started, "timeout")
        except httpx.HTTPError as exc:
            return self._failed(started, type(exc).__name__)
        except OSError as exc:
            return self._failed(started, type(exc).__name__)
        return HttpOutcome(
            status_code=status,
            error=None,
            latency_ms=(time.perf_counter() - started) * 1000,
            excerpt=bytes(excerpt[:EXCERPT_BYTES]).decode(errors="replace") or None,
            retry_after=retry_after,
        )

    def _stream(
        self,
        url: httpx.URL,
        headers: dict[str, str],
        body: bytes,
        timeout: float | None,
        client: httpx.AsyncClient | None,
    ) -> AbstractAsyncContextManager[httpx.Response]:
        sender = client or self._client
        if timeout is None:
            return sender.stream("POST", url, content=body, headers=headers)
        limit = httpx.Timeout(timeout, connect=min(self._connect_timeout, timeout), pool=timeout)
        return sender.stream("POST", url, content=body, headers=headers, timeout=limit)

    async def _post(
        self,
        url: httpx.URL,
        headers: dict[str, str],
        body: bytes,
        timeout: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> tuple[int, bytearray, float | None]:
        resp: httpx.Response | None = None
        opened: AbstractAsyncContextManager[httpx.Response]
        if timeout is None and client is None:
            opened = self._client.stream("POST", url, content=body, headers=headers)
        else:
            opened = self._stream(url, headers, body, timeout, client)
        try:
            async with opened as resp:
                excerpt = bytearray()
                async for chunk in resp.aiter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
                return resp.status_code, excerpt, retry_after
        finally:
            if resp is not None:
                # A response and its stream refer to each other: a cycle only the garbage
                # collector would free, a dozen objects a request. Cut here, they go at once.
                resp.stream = _SPENT

    @staticmethod
    def _failed(started: float, error: str) -> HttpOutcome:
        return HttpOutcome(None, error, (time.perf_counter() - started) * 1000)
