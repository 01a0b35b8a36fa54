"""Where hookline may send a request: the one destination policy (the SSRF rule).

Three places judge an outbound URL, all through this module: the admin API when a
subscription is written (:meth:`DestinationPolicy.check_url`), and at connect time the
delivery service and the local engine's ``http`` node (:class:`DestinationGuard`,
called from inside their transports' connection step, see
:mod:`shared.guarded_http`).

The rule:

- The URL: ``https`` (``http`` only with ``allow_insecure``); no whitespace or
  control characters; no user info; a host; not port 0.
- The host: not ``localhost`` nor a name under ``.localhost``.
- The address, an IP literal in the URL (in any form a resolver takes: ``127.1``,
  ``0x7f.0.0.1``, ``2130706433``) or each address a name resolves to (one bad answer
  refuses the name: an attacker picks which one is used): not loopback, private,
  shared (CGNAT), link-local, site-local, multicast, unspecified, reserved,
  documentation, benchmarking or otherwise not globally reachable; an IPv4-mapped
  IPv6 address is judged as the IPv4 address it reaches; the tunnel and translation
  prefixes (NAT64, 6to4, Teredo, IPv4-compatible) are refused outright, since they
  reach an IPv4 address of the resolver's choosing through a gateway.
- ``allow_private`` lifts the host and address rules (development and tests), but
  never for the cloud metadata addresses.

A name is judged where it is resolved, at connect time: the write-time check judges
the URL and its literal address only (DNS answers change, and a receiver's name may
not resolve yet when its subscription is written).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from shared.errors import DestinationRefused, DestinationUnresolved

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused even where private destinations are allowed: no webhook receiver lives there.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

# The IANA special-purpose ranges that are not globally reachable, named here so the
# verdict does not depend on the tables of the Python release at hand (3.11's patch
# releases disagree on some of them); the stdlib's flags are consulted as well.
_NOT_GLOBAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard-only"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignment"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_RANGES = tuple((ipaddress.ip_network(net), reason) for net, reason in _NOT_GLOBAL)
_TUNNELS = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "NAT64"),
        ("2002::/16", "6to4"),
        ("2001::/32", "Teredo"),
        ("::/96", "IPv4-compatible"),
    )
)
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
METADATA_REASON = "cloud metadata address"


# The verdicts and parses are cached: the delivery service judges the same few hosts and
# addresses on every send, and a verdict never changes within a process.
@functools.lru_cache(maxsize=4096)
def forbidden_reason(address: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why ``address`` may not be called (``"loopback address"``…), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address in _MAPPED:
        assert address.ipv4_mapped is not None
        return forbidden_reason(address.ipv4_mapped, allow_private=allow_private)
    if address in METADATA_ADDRESSES:
        return METADATA_REASON
    if allow_private:
        return None
    for network, reason in (*_TUNNELS, *_RANGES):
        if address.version == network.version and address in network:
            return f"{reason} address"
    flags = (
        ("loopback", address.is_loopback),
        ("private", address.is_private),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("not globally routable", not address.is_global),
    )
    for reason, hit in flags:
        if hit:
            return f"{reason} address"
    return None


@functools.lru_cache(maxsize=4096)
def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` names literally, in any form a resolver would take, or None.

    An IPv6 zone (``fe80::1%eth0``) is dropped: it says which interface, not which
    address, and the rule judges the address.
    """
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton takes the legacy forms getaddrinfo also takes: 127.1, 0x7f.0.0.1, 2130706433.
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class Destination:
    """A URL the policy accepted: its scheme, host (as written) and port."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """The rule above; ``allow_insecure`` admits http, ``allow_private`` private hosts."""

    allow_private: bool = False
    allow_insecure: bool = False

    def check_url(self, url: str) -> Destination:
        """The URL's destination, or :class:`DestinationRefused` saying which rule it breaks."""
        if url != url.strip() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
            raise DestinationRefused("the URL holds whitespace or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise DestinationRefused(f"not a URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise DestinationRefused("the URL must be https")
        if scheme == "http" and not self.allow_insecure:
            raise DestinationRefused(
                "the URL must be https (http needs HOOKLINE_ALLOW_INSECURE_URLS=1)"
            )
        if "@" in parts.netloc or parts.username is not None or parts.password is not None:
            raise DestinationRefused("the URL must not hold user info (user:password@)")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise DestinationRefused("the URL has no host")
        if port == 0:
            raise DestinationRefused("the URL's port is 0")
        lowered = host.lower()
        if not self.allow_private and (lowered == "localhost" or lowered.endswith(".localhost")):
            raise DestinationRefused("the URL points at this machine (localhost)")
        address = literal_address(host)
        if address is not None:
            self.check_address(address, host)
        return Destination(scheme, host, port or (443 if scheme == "https" else 80))

    def check_address(self, address: IPAddress, host: str) -> None:
        """Refuse ``address`` (``host``'s, literally or resolved) when the rule does."""
        reason = forbidden_reason(address, allow_private=self.allow_private)
        if reason is None:
            return
        shown = host if host == str(address) else f"{host} ({address})"
        if reason == METADATA_REASON:
            raise DestinationRefused(
                f"{shown} is a {reason}, refused even where private destinations are allowed"
            )
        raise DestinationRefused(
            f"{shown} is not a public address ({reason}); private destinations are allowed "
            "only with HOOKLINE_ALLOW_PRIVATE_DESTINATIONS=1"
        )


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


class DestinationGuard:
    """The policy at connect time: resolves a host with an injectable :class:`Resolver`,
    judges every address it returns, and hands back the ones to connect to."""

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        allow_private: bool = False,
        allow_insecure: bool = False,
    ) -> None:
        self._resolver = resolver or SystemResolver()
        self.policy = DestinationPolicy(allow_private=allow_private, allow_insecure=allow_insecure)

    @property
    def allow_private(self) -> bool:
        return self.policy.allow_private

    @property
    def allow_insecure(self) -> bool:
        return self.policy.allow_insecure

    def check_url(self, url: str) -> Destination:
        """What the write-time check judges: the URL and its literal address."""
        return self.policy.check_url(url)

    async def connect_addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``; raises when any is refused."""
        host = host.strip("[]")
        lowered = host.lower().rstrip(".")
        if not self.policy.allow_private and (
            lowered == "localhost" or lowered.endswith(".localhost")
        ):
            raise DestinationRefused(f"{host} is this machine (localhost)")
        literal = literal_address(host)
        if literal is not None:
            # The literal as the socket takes it (legacy IPv4 forms spelled out), zone kept.
            zone = host.partition("%")[2]
            candidates = [f"{literal}%{zone}" if zone else str(literal)]
        else:
            try:
                candidates = await self._resolver.resolve(host, port)
            except OSError as exc:
                raise DestinationUnresolved(f"cannot resolve {host}: {exc}") from exc
        if not candidates:
            raise DestinationUnresolved(f"{host} resolves to no address")
        for candidate in candidates:
            address = literal_address(candidate)
            if address is None:
                raise DestinationRefused(f"{host} resolves to {candidate!r}, not an address")
            self.policy.check_address(address, host)
        return candidates
