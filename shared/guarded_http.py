"""An httpx transport that connects only to addresses the destination guard allowed.

httpcore asks its network backend to open each connection; this backend asks the
:class:`~shared.destinations.DestinationGuard` first, inside that step, and connects
to an address it returned, so a DNS answer cannot change between the check and the
connect. The URL keeps its host name: the Host header, the pool's key and the TLS
server name are the destination's. Used by the delivery service and by the local
engine's ``http`` node.

With an egress proxy (``proxy=(host, port)``, an HTTP CONNECT proxy), the destination
is resolved and judged the same way first; the connection then goes to the proxy, which
is asked to ``CONNECT`` to the checked address (an IP literal: the proxy resolves
nothing), and the tunnel is what httpcore gets: TLS, the Host header and the pool stay
the destination's. The proxy's own address is not judged (it is usually private).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from shared._httpx_internals import with_pool
from shared.destinations import DestinationGuard
from shared.errors import DestinationRefused

MAX_PROXY_ANSWER = 16 * 1024


def connect_line(address: str, port: int) -> bytes:
    """The CONNECT request for ``address`` (an IP literal the guard checked)."""
    target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()


def proxy_status(answer: bytes) -> int:
    """The status code of a proxy's answer to CONNECT (its head, up to the blank line)."""
    line = answer.split(b"\r\n", 1)[0].split()
    if len(line) < 2 or not line[0].startswith(b"HTTP/") or not line[1].isdigit():
        raise httpcore.ProxyError("the egress proxy did not answer CONNECT with HTTP")
    return int(line[1])


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """``inner`` opens the sockets (the real network unless a test passes another)."""

    def __init__(
        self,
        guard: DestinationGuard,
        inner: httpcore.AsyncNetworkBackend | None = None,
        *,
        proxy: tuple[str, int] | None = None,
    ) -> None:
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()
        self._proxy = proxy

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
                if self._proxy is not None:
                    return await self._tunnel(address, port, timeout, local_address, socket_options)
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.ProxyError) as exc:
                last = exc
        assert last is not None
        raise last

    async def _tunnel(
        self,
        address: str,
        port: int,
        timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[Any] | None,
    ) -> httpcore.AsyncNetworkStream:
        """A stream to ``address`` through the proxy: CONNECT, then the tunnel."""
        assert self._proxy is not None
        proxy_host, proxy_port = self._proxy
        stream = await self._inner.connect_tcp(
            proxy_host,
            proxy_port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        try:
            await stream.write(connect_line(address, port), timeout=timeout)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = await stream.read(4096, timeout=timeout)
                if not chunk or len(answer) > MAX_PROXY_ANSWER:
                    raise httpcore.ProxyError("the egress proxy closed the CONNECT unanswered")
                answer += chunk
            status = proxy_status(answer)
            if not 200 <= status < 300:
                raise httpcore.ProxyError(f"the egress proxy answered CONNECT with {status}")
        except BaseException:
            await stream.aclose()
            raise
        return stream

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
        ssl_context: ssl.SSLContext | None = None,
        proxy: tuple[str, int] | None = None,
    ) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx builds its pool without a way to pass a network backend; rebuild it with one.
        with_pool(
            self,
            httpcore.AsyncConnectionPool(
                ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=GuardedBackend(guard, network, proxy=proxy),
            ),
        )
