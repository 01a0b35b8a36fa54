"""An outbound subscription's request and response shapes.

Checks that depend on settings (the outbound URL rules) read them from the
validation context: ``Model.model_validate(data, context={"settings": settings})``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from shared.destinations import DestinationPolicy
from shared.entities import Ordering, RateLimit, event_pattern_matches
from shared.errors import DestinationRefused
from shared.messages import LIFECYCLE_EVENT_TYPES, OPERATIONAL_EVENT_TYPES
from shared.settings import Settings

from .controls import (
    ClientCertificateIn,
    ClientCertificateOut,
    Gap,
    check_schedule,
    check_timeout,
)
from .models import (
    EntityId,
    EntityOut,
    ExternalId,
    ListQuery,
    Pattern,
    SecretInfo,
    SecretResult,
    Strict,
    Text,
)

# Operational events are named to be had: "*" is for lifecycle events (the intake's rule).
DELIVERABLE_TYPES = (*LIFECYCLE_EVENT_TYPES, *OPERATIONAL_EVENT_TYPES)

SubscriptionSecretText = Annotated[
    str,
    StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$", max_length=100),
    Field(
        description="`whsec_` and the base64 of 24 to 64 random bytes (Standard Webhooks)",
        json_schema_extra={"writeOnly": True},
    ),
]

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_RESERVED_HEADERS = {
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
}


def _check_subscription_secret(value: str | None) -> str | None:
    if value is not None:
        try:
            raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("the part after whsec_ is not base64") from exc
        if not 24 <= len(raw) <= 64:
            raise ValueError("the secret must hold 24 to 64 bytes")
    return value


def _settings(info: ValidationInfo) -> Settings | None:
    context = info.context
    if isinstance(context, dict):
        found = context.get("settings")
        if isinstance(found, Settings):
            return found
    return None


class SubscriptionIn(Strict):
    """An outbound subscription: which lifecycle events go to which URL."""

    id: EntityId | None = Field(default=None, description="made by the server when absent")
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="https (http only where insecure URLs are allowed)"
    )
    description: Text | None = None
    secret: SubscriptionSecretText | None = Field(
        default=None, description="generated (whsec_…) when absent"
    )
    events: list[Pattern] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=50,
        description='lifecycle event types or patterns; "*" for all',
    )
    workflow_ids: list[ExternalId] | None = Field(
        default=None, max_length=200, description="only these workflows' events; all when absent"
    )
    enabled: bool = True
    headers: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=100)],
        Annotated[str, StringConstraints(max_length=4096)],
    ] = Field(default_factory=dict, max_length=50, description="sent with every delivery")
    rate_limit: RateLimit | None = Field(
        default=None,
        description="at most per_second requests a second from all replicas together "
        "(docs/delivery.md)",
    )
    retry_schedule: list[Gap] | None = Field(
        default=None,
        max_length=100,
        description="seconds between attempts, within the service's bounds; its own when null",
    )
    timeout: float | None = Field(
        default=None, gt=0, description="request timeout in seconds; the service's when null"
    )
    paused: bool = Field(default=False, description="deliveries wait (they are not lost)")
    ordering: Ordering = Field(
        default="none",
        description='"run": a run\'s next event goes once the one before it was delivered '
        "or given up",
    )
    client_certificate: ClientCertificateIn | None = Field(
        default=None, description="presented to the receiver (mutual TLS)"
    )

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        return check_schedule(value, _settings(info))

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | None, info: ValidationInfo) -> float | None:
        return check_timeout(value, _settings(info))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        # The write-time half of the destination policy: the URL and a literal address;
        # a name is judged where it is resolved, when each delivery connects.
        settings = _settings(info)
        policy = DestinationPolicy(
            allow_private=settings.allow_private_destinations if settings else False,
            allow_insecure=settings.allow_insecure_urls if settings else False,
        )
        try:
            policy.check_url(value)
        except DestinationRefused as exc:
            raise ValueError(exc.reason) from exc
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return _check_subscription_secret(value)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not any(event_pattern_matches(pattern, t) for t in DELIVERABLE_TYPES):
                known = ", ".join(DELIVERABLE_TYPES)
                raise ValueError(f"{pattern!r} matches no event type ({known})")
        return list(dict.fromkeys(value))

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name, text in value.items():
            lowered = name.lower()
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a header name")
            if lowered in _RESERVED_HEADERS or lowered.startswith("proxy-"):
                raise ValueError(f"{name!r} is set by hookline and cannot be overridden")
            if lowered in seen:
                raise ValueError(f"{name!r} is given twice")
            seen.add(lowered)
            if any(c in text for c in "\r\n\x00"):
                raise ValueError(f"the value of {name!r} holds a line break or NUL")
        return value


class SubscriptionOut(EntityOut, SecretResult):
    url: str
    description: str | None = None
    secrets: list[SecretInfo]
    events: list[str]
    workflow_ids: list[str] | None = None
    enabled: bool
    disabled_reason: str | None = Field(
        default=None, description="why hookline disabled it (a 410, failing for days)"
    )
    headers: dict[str, str]
    rate_limit: RateLimit | None = None
    retry_schedule: list[float] | None = None
    timeout: float | None = None
    paused: bool = False
    ordering: Ordering = "none"
    client_certificate: ClientCertificateOut | None = Field(
        default=None, description="the certificate shown; its key never"
    )


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None = None


class RotateSubscriptionSecretIn(Strict):
    secret: SubscriptionSecretText | None = Field(default=None, description="generated when absent")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return _check_subscription_secret(value)


class SubscriptionQuery(ListQuery):
    enabled: bool | None = None
    event_type: ExternalId | None = Field(default=None, description="that want this event type")
    workflow_id: ExternalId | None = Field(
        default=None, description="that receive this workflow's events"
    )
