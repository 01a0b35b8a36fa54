"""The one long-lived HTTP client that sends every attempt.

Lifecycle: ``async with Sender(...)`` opens the client (explicit pool limits and
timeouts, no redirects, no environment proxies); :meth:`Sender.send` never raises
for anything the network or the receiver does: it returns an :class:`HttpOutcome`
with a status code or an error class; leaving the block closes the pool.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httpx

from services.delivery._guard import DestinationGuard, DestinationRefused
from services.delivery._schedule import parse_retry_after
from services.delivery._signing import USER_AGENT
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
    ) -> None:
        self._guard = guard
        self._request_timeout = request_timeout
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        # No cookie jar: one receiver's cookies are nobody's business, and extracting
        # them cost a visible share of each request (see shared._httpx_internals).
        self._client = without_cookie_jar(
            httpx.AsyncClient(
                transport=guarded_transport(guard, limits, transport),
                timeout=httpx.Timeout(
                    request_timeout, connect=connect_timeout, pool=request_timeout
                ),
                follow_redirects=False,
                trust_env=False,
                headers={"user-agent": USER_AGENT},
            )
        )
        # Per subscription URL: the parsed httpx URL and the (host, port) to check, once.
        self._targets: dict[str, tuple[httpx.URL, str, int]] = {}

    @property
    def request_timeout(self) -> float:
        return self._request_timeout

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
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
    ) -> HttpOutcome:
        """POST ``body``; with ``scope`` the caller owns the deadline (it must be armed).

        A ``scope`` that expires raises :class:`TimeoutError` out of the caller's block
        rather than returning an outcome, so the caller can tell whose deadline it was.
        """
        started = time.perf_counter()
        try:
            target, host, port = self._target(url)
            # Some transports skip resolution for IP literals; check them here as well.
            await self._guard.connect_addresses(host, port)
            if scope is None:
                async with asyncio.timeout(self._request_timeout):
                    status, excerpt, retry_after = await self._post(target, headers, body)
            else:
                status, excerpt, retry_after = await self._post(target, headers, body)
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

    async def _post(
        self, url: httpx.URL, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytearray, float | None]:
        resp: httpx.Response | None = None
        try:
            async with self._client.stream("POST", url, content=body, headers=headers) as resp:
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
