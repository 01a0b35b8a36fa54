"""The client's address (behind trusted proxies only) and per-webhook CIDR allowlists."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from functools import lru_cache

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)
def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a peer or ``X-Forwarded-For`` entry; ports and brackets are dropped;
    IPv4-mapped IPv6 addresses become IPv4. ``None`` when it is not an address."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):  # [2001:db8::1]:443
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # 203.0.113.9:5123
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses); entries that do not parse are logged and skipped."""
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            log.warning("ignoring an address range that does not parse", extra={"cidr": entry})
    return tuple(networks)


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


class TrustedProxies:
    """Honours ``X-Forwarded-For`` only when the peer is one of the configured proxies."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._networks = parse_networks(entries)

    def trusts(self, address: IPAddress) -> bool:
        return _within(address, self._networks)

    def client_ip(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The right-most address in ``X-Forwarded-For`` that is not a trusted proxy.

        Entries left of it were written by the client itself and prove nothing.
        ``None`` when the address cannot be told (allowlists then refuse).
        """
        address = parse_ip(peer)
        if address is None:
            return None
        if not self._networks or not self.trusts(address):
            return _text(address)
        hops = [part for value in forwarded_for for part in value.split(",") if part.strip()]
        for hop in reversed(hops):
            parsed = parse_ip(hop)
            if parsed is None:
                # A trusted proxy wrote garbage: the client cannot be told.
                return None
            if not self.trusts(parsed):
                return str(parsed)
            address = parsed
        return str(address)


@lru_cache(maxsize=4096)
def _text(address: IPAddress) -> str:
    return str(address)


@lru_cache(maxsize=1024)
def _allowlist(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return parse_networks(cidrs)


def ip_allowed(source_ip: str | None, allowed_cidrs: Sequence[str]) -> bool:
    """True when the webhook has no allowlist, or the address is inside one of its ranges."""
    if not allowed_cidrs:
        return True
    address = parse_ip(source_ip)
    if address is None:
        return False
    return _within(address, _allowlist(tuple(allowed_cidrs)))
