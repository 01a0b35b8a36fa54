"""HTTP transports for httpx that connect only to addresses the guard has checked.

Two are offered because the benchmark compares them: httpx's own (httpcore, with a
network backend that asks the guard inside ``connect_tcp``) and aiohttp's through
``httpx-aiohttp`` (with an aiohttp resolver that asks the guard). Either way the
URL keeps its host name, so the Host header, the connection pool's key and the TLS
server name are the subscriber's host, while the socket goes to a checked address.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any, Literal

import httpcore
import httpx

from services.delivery._guard import DestinationGuard, DestinationRefused

TransportKind = Literal["httpx", "aiohttp"]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, guard: DestinationGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.connect_addresses(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("unix sockets are not a delivery destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedHTTPTransport(httpx.AsyncHTTPTransport):
    def __init__(self, guard: DestinationGuard, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx builds its pool without a way to pass a network backend; rebuild it with one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(guard),
        )


def _aiohttp_transport(guard: DestinationGuard, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult
    from httpx_aiohttp import AiohttpTransport

    class GuardedResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            addresses = await guard.connect_addresses(host, port)
            return [
                ResolveResult(
                    hostname=host,
                    host=a,
                    port=port,
                    family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
                for a in addresses
            ]

        async def close(self) -> None:
            return None

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry or 30.0,
            resolver=GuardedResolver(),
            family=socket.AF_UNSPEC,
            ttl_dns_cache=10,
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    return AiohttpTransport(client=session, limits=limits, trust_env=False)


def guarded_transport(
    guard: DestinationGuard, limits: httpx.Limits, kind: TransportKind = "httpx"
) -> httpx.AsyncBaseTransport:
    """A transport whose every connection goes to an address ``guard`` allowed."""
    if kind == "aiohttp":
        return _aiohttp_transport(guard, limits)
    return _GuardedHTTPTransport(guard, limits)
