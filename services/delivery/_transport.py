"""HTTP transports for httpx that connect only to addresses the guard has checked.

Two are offered because the benchmark compares them: httpx's own (httpcore, with a
network backend that asks the guard inside ``connect_tcp``: :mod:`shared.guarded_http`,
which the local engine uses too) and aiohttp's through ``httpx-aiohttp`` (with an
aiohttp resolver that asks the guard). Either way the URL keeps its host name, so the
Host header, the connection pool's key and the TLS server name are the subscriber's
host, while the socket goes to a checked address.
"""

from __future__ import annotations

import socket
from typing import Literal

import httpx

from shared.destinations import DestinationGuard
from shared.guarded_http import GuardedHTTPTransport

TransportKind = Literal["httpx", "aiohttp"]


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
    return GuardedHTTPTransport(guard, limits)
