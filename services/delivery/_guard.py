"""The SSRF guard: outbound URLs are checked when they are sent, on the address connected to.

The guard is :class:`shared.destinations.DestinationGuard`, the one destination policy
that admin validation and the local engine's ``http`` node apply too: a destination is
resolved by an injectable :class:`Resolver`; every address it returns is checked, and
the connection goes to a checked address (the transports in :mod:`._transport` call
:meth:`DestinationGuard.connect_addresses` from inside the connection step, so a DNS
answer cannot change between the check and the connect). Host header and TLS server
name stay the URL's host.
"""

from shared.destinations import (
    METADATA_ADDRESSES,
    DestinationGuard,
    Resolver,
    SystemResolver,
    forbidden_reason,
)
from shared.errors import DestinationRefused

__all__ = [
    "METADATA_ADDRESSES",
    "DestinationGuard",
    "DestinationRefused",
    "Resolver",
    "SystemResolver",
    "forbidden_reason",
]
