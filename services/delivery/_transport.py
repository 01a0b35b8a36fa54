"""HTTP transports for httpx that connect only to addresses the guard has checked.

Two are offered because the benchmark compares them: httpx's own (httpcore, with a
network backend that asks the guard inside ``connect_tcp``: :mod:`shared.guarded_http`,
which the local engine uses too) and aiohttp's through ``httpx-aiohttp`` (with an
aiohttp resolver that asks the guard). Either way the URL keeps its host name, so the
Host header, the connection pool's key and the TLS server name are the subscriber's
host, while the socket goes to a checked address.

Through an egress proxy (``HOOKLINE_EGRESS_PROXY``, HTTP CONNECT): httpx's transport
tunnels in its connect step (:mod:`shared.guarded_http`). aiohttp's is handed each
request with its host replaced by the address the guard checked (so aiohttp's own proxy
support asks the proxy to ``CONNECT`` to that address), the Host header and the TLS
server name (``sni_hostname``, part of aiohttp's pool key) kept the subscriber's; an
``http`` URL goes to the proxy as an absolute URI to that address. Either way the
proxy's own address is exempt from the guard, and the destination is judged before
the proxy hears of it.
"""

from __future__ import annotations

import socket
import ssl
from typing import Literal
from urllib.parse import urlsplit

import httpx

from shared.destinations import DestinationGuard, SystemResolver
from shared.guarded_http import GuardedHTTPTransport

TransportKind = Literal["httpx", "aiohttp"]


def proxy_address(proxy: str) -> tuple[str, int]:
    parts = urlsplit(proxy)
    return parts.hostname or "", parts.port or 80


class _ToCheckedAddress(httpx.AsyncBaseTransport):
    """Sends each request to the address the guard checked for its host (for a transport
    whose proxy support would otherwise hand the proxy the host name to resolve)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, guard: DestinationGuard) -> None:
        self._inner = inner
        self._guard = guard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._guard.connect_addresses(url.host, port)
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": url.host}
        # The Host header was set from the URL when the request was built: it stays.
        request.url = url.copy_with(host=addresses[0])
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _aiohttp_transport(
    guard: DestinationGuard,
    limits: httpx.Limits,
    ssl_context: ssl.SSLContext | None,
    proxy: str | None,
) -> httpx.AsyncBaseTransport:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult
    from httpx_aiohttp import AiohttpTransport

    exempt = {proxy_address(proxy)[0]} if proxy else set()
    plain = SystemResolver()

    class GuardedResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            if host in exempt:  # the egress proxy: usually private, never a destination
                addresses = await plain.resolve(host, port)
            else:
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
            ssl=ssl_context if ssl_context is not None else True,
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    transport = AiohttpTransport(
        client=session,
        limits=limits,
        trust_env=False,
        proxy=httpx.Proxy(proxy) if proxy else None,
    )
    return _ToCheckedAddress(transport, guard) if proxy else transport


def guarded_transport(
    guard: DestinationGuard,
    limits: httpx.Limits,
    kind: TransportKind = "httpx",
    *,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | None = None,
) -> httpx.AsyncBaseTransport:
    """A transport whose every connection goes to an address ``guard`` allowed (through
    the CONNECT proxy ``proxy``, http://host:port, when given)."""
    if kind == "aiohttp":
        return _aiohttp_transport(guard, limits, ssl_context, proxy)
    return GuardedHTTPTransport(
        guard,
        limits,
        ssl_context=ssl_context,
        proxy=proxy_address(proxy) if proxy else None,
    )
