"""The delivery service: workflow events → signed outbound webhooks (Standard Webhooks).

Public surface: :class:`DeliveryService` (an async context manager), the SSRF
guard (:class:`DestinationGuard`, :class:`Resolver`, :class:`DestinationRefused`),
the signing helpers, and :func:`run` for ``hookline delivery`` (in ``main``).
"""

from services.delivery._guard import (
    DestinationGuard,
    DestinationRefused,
    Resolver,
    SystemResolver,
    forbidden_reason,
)
from services.delivery._schedule import RetryPolicy, parse_retry_after
from services.delivery._sender import HttpOutcome, Sender
from services.delivery._service import DeliveryService
from services.delivery._signing import (
    USER_AGENT,
    delivery_id,
    message_id,
    render_body,
    signature_headers,
)
from shared.standard_webhooks import sign

__all__ = [
    "USER_AGENT",
    "DeliveryService",
    "DestinationGuard",
    "DestinationRefused",
    "HttpOutcome",
    "Resolver",
    "RetryPolicy",
    "Sender",
    "SystemResolver",
    "delivery_id",
    "forbidden_reason",
    "message_id",
    "parse_retry_after",
    "render_body",
    "sign",
    "signature_headers",
]
