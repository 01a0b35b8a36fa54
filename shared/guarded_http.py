"""An httpx transport that connects only to addresses the destination guard allowed.

httpcore asks its network backend to open each connection; this backend asks the
:class:`~shared.destinations.DestinationGuard` first, inside that step, and connects
to an address it returned, so a DNS answer cannot change between the check and the
connect. The URL keeps its host name: the Host header, the pool's key and the TLS
server name are the destination's. Used by the delivery service and by the local
engine's ``http`` node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from shared._httpx_internals import with_pool
from shared.destinations import DestinationGuard
from shared.errors import DestinationRefused


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """``inner`` opens the sockets (the real network unless a test passes another)."""

    def __init__(
        self, guard: DestinationGuard, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

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
        raise DestinationRefused("unix sockets are not a destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over a :class:`GuardedBackend`; environment proxies are
    ignored (a proxy would be the address connected to, not the destination)."""

    def __init__(
        self,
        guard: DestinationGuard,
        limits: httpx.Limits,
        *,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx builds its pool without a way to pass a network backend; rebuild it with one.
        with_pool(
            self,
            httpcore.AsyncConnectionPool(
                ssl_context=httpx.create_ssl_context(trust_env=False),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=GuardedBackend(guard, network),
            ),
        )
