"""Outbound URL rules applied when a subscription is written.

These are the write-time half of the SSRF guard: the scheme, user info and IP
literals are judged here; the delivery service resolves names and checks the
addresses it actually connects to at send time.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRejected(ValueError):
    """The URL breaks a write-time rule; the message says which."""


def _literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any form a resolver would accept."""
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


def is_forbidden_address(address: IPAddress) -> bool:
    """Private, loopback, link-local, reserved, multicast, unspecified or otherwise not global."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None and is_forbidden_address(mapped):
            return True
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or not address.is_global
    )


def check_destination_url(url: str, *, allow_insecure: bool, allow_private: bool) -> str:
    """Return ``url`` when it may be a subscription's destination; raise :class:`UrlRejected`."""
    if url != url.strip() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UrlRejected("the URL holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRejected(f"not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UrlRejected("the URL must be https")
    if scheme == "http" and not allow_insecure:
        raise UrlRejected("the URL must be https (http needs HOOKLINE_ALLOW_INSECURE_URLS=1)")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise UrlRejected("the URL must not hold user info (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRejected("the URL has no host")
    if port == 0:
        raise UrlRejected("the URL's port is 0")
    if allow_private:
        return url
    lowered = host.lower()
    if lowered == "localhost" or lowered.endswith(".localhost"):
        raise UrlRejected("the URL points at this machine (localhost)")
    address = _literal_address(host.split("%", 1)[0])
    if address is not None and is_forbidden_address(address):
        raise UrlRejected(
            f"{address} is a private, loopback, link-local or reserved address "
            "(allowed only with HOOKLINE_ALLOW_PRIVATE_DESTINATIONS=1)"
        )
    return url
