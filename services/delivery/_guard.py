"""The SSRF guard: outbound URLs are checked when they are sent, on the address connected to.

A destination is resolved by an injectable :class:`Resolver`; every address it
returns is checked, and the connection goes to a checked address (the
transports in :mod:`._transport` call :meth:`DestinationGuard.connect_address`
from inside the connection step, so a DNS answer cannot change between the
check and the connect). Host header and TLS server name stay the URL's host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Protocol
from urllib.parse import urlsplit

from shared.errors import HooklineError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services: refused even where private ranges are not (they are, but
# naming them keeps the rule explicit if the range checks ever change).
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# Ranges the stdlib flags do not all cover: shared address space (CGNAT) and
# the NAT64 well-known prefix, which can smuggle an IPv4 private address.
_EXTRA_FORBIDDEN = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


class DestinationRefused(HooklineError):
    """The URL or the address it resolves to is not one hookline may call."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Resolver(Protocol):
    """Turns a host name into IP address strings."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``), with a short cache."""

    def __init__(self, ttl: float = 10.0) -> None:
        self._ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        now = time.monotonic()
        hit = self._cache.get((host, port))
        if hit is not None and hit[0] > now:
            return hit[1]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self._cache[(host, port)] = (now + self._ttl, addresses)
        return addresses


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden_reason(address.ipv4_mapped)
    if address in METADATA_ADDRESSES:
        return "cloud metadata address"
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("private", any(address in net for net in _EXTRA_FORBIDDEN)),
        ("not globally routable", not address.is_global),
    )
    for reason, hit in checks:
        if hit:
            return f"{reason} address"
    return None


class DestinationGuard:
    """Checks URLs (scheme) and addresses (ranges); lifted by the two settings flags."""

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        allow_private: bool = False,
        allow_insecure: bool = False,
    ) -> None:
        self._resolver = resolver or SystemResolver()
        self.allow_private = allow_private
        self.allow_insecure = allow_insecure

    def check_url(self, url: str) -> None:
        """Refuse what no address can make right: a bad scheme or a missing host."""
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise DestinationRefused(f"malformed url: {exc}") from exc
        if parts.scheme not in ("https", "http"):
            raise DestinationRefused(f"scheme {parts.scheme!r} is not allowed")
        if parts.scheme == "http" and not self.allow_insecure:
            raise DestinationRefused("http urls are refused (https required)")
        if not parts.hostname:
            raise DestinationRefused("url has no host")

    async def connect_addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``; raises when any is forbidden."""
        host = host.strip("[]")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            candidates = [str(literal)]
        else:
            try:
                candidates = await self._resolver.resolve(host, port)
            except OSError as exc:
                raise DestinationRefused(f"cannot resolve {host}: {exc}") from exc
        if not candidates:
            raise DestinationRefused(f"{host} resolves to no address")
        if self.allow_private:
            return candidates
        for candidate in candidates:
            # One bad answer refuses the host: an attacker controls which one is used.
            reason = forbidden_reason(ipaddress.ip_address(candidate.split("%", 1)[0]))
            if reason is not None:
                raise DestinationRefused(f"{host} resolves to a {reason} ({candidate})")
        return candidates
