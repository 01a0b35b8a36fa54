"""An inbound webhook's request and response shapes."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, Field, StringConstraints, field_validator

from shared.entities import Provider, RateLimit

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

SecretText = Annotated[
    str,
    StringConstraints(min_length=8, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(json_schema_extra={"writeOnly": True}),
]


class BindingIn(Strict):
    """Which workflow an inbound webhook starts, for which of its events."""

    workflow_id: ExternalId
    events: list[Pattern] = Field(default_factory=lambda: ["*"], min_length=1, max_length=100)
    filter: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = Field(
        default=None, description="a JMESPath expression on the event; runs when it is truthy"
    )

    @field_validator("filter")
    @classmethod
    def _filter_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jmespath.compile(value)
            except (JMESPathError, ValueError, TypeError, KeyError, IndexError) as exc:
                raise ValueError(f"not a JMESPath expression: {exc}") from exc
        return value


class WebhookIn(Strict):
    """An inbound webhook: where a provider posts, how it is verified, what it starts."""

    id: EntityId | None = Field(default=None, description="made by the server when absent")
    provider: Provider = "generic"
    description: Text | None = None
    secret: SecretText | None = Field(
        default=None,
        description=(
            "the secret the provider signs with; generated when absent "
            "(Slack's signing secret must be given)"
        ),
    )
    allow_unsigned: bool = Field(default=False, description="accept requests without signature")
    allow_legacy_sha1: bool = False
    allowed_cidrs: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=200, description="source networks; empty allows all"
    )
    rate_limit: RateLimit | None = None
    enabled: bool = True
    bindings: list[BindingIn] = Field(default_factory=list, max_length=100)
    ack_text: Annotated[str, StringConstraints(max_length=3000)] | None = Field(
        default=None, description="Slack: the immediate reply"
    )

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP network") from exc
        return out


class WebhookOut(EntityOut, SecretResult):
    provider: Provider
    description: str | None = None
    secrets: list[SecretInfo]
    allow_unsigned: bool
    allow_legacy_sha1: bool
    allowed_cidrs: list[str]
    rate_limit: RateLimit | None = None
    enabled: bool
    bindings: list[BindingIn]
    ack_text: str | None = None


class WebhookList(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page")


class RotateWebhookSecretIn(Strict):
    secret: SecretText | None = Field(default=None, description="generated when absent")


class WebhookQuery(ListQuery):
    provider: Provider | None = None
    enabled: bool | None = None
    workflow_id: ExternalId | None = Field(default=None, description="bound to this workflow")
