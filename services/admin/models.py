"""The admin API's request and response shapes.

These pydantic models validate what clients send and shape what the API
answers; the OpenAPI document at ``/openapi.json`` is generated from them
(see :mod:`services.admin.openapi`). The stored entities themselves are
:mod:`shared.entities`; the ``*In`` models here are their writable parts.

Checks that depend on settings (the outbound URL rules) read them from the
validation context: ``Model.model_validate(data, context={"settings": settings})``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from shared.destinations import DestinationPolicy
from shared.entities import Node, Ordering, Provider, RateLimit, event_pattern_matches
from shared.errors import DestinationRefused
from shared.messages import (
    LIFECYCLE_EVENT_TYPES,
    OPERATIONAL_EVENT_TYPES,
    ErrorOccurred,
    LifecycleEvent,
    NodeCompleted,
    StatusChanged,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)
from shared.settings import Settings

from .controls import (
    ClientCertificateIn,
    ClientCertificateOut,
    Gap,
    check_schedule,
    check_timeout,
)

# Operational events are named to be had: "*" is for lifecycle events (the intake's rule).
DELIVERABLE_TYPES = (*LIFECYCLE_EVENT_TYPES, *OPERATIONAL_EVENT_TYPES)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
ID_RE = re.compile(ID_PATTERN)

EntityId = Annotated[
    str,
    StringConstraints(pattern=ID_PATTERN, min_length=1, max_length=128),
    Field(description="letters, digits, `.`, `_`, `:` and `-`; 128 characters at most"),
]
ExternalId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
Text = Annotated[str, StringConstraints(max_length=2000)]
Pattern = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s\x00-\x1f\x7f]+$"),
    Field(description='an event type or a pattern: "*", "pull_request.*", "workflow.*"'),
]
SecretText = Annotated[
    str,
    StringConstraints(min_length=8, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(json_schema_extra={"writeOnly": True}),
]
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


class Strict(BaseModel):
    """Request bodies: unknown fields are errors (a typo should not pass silently)."""

    model_config = ConfigDict(extra="forbid")


# -- shared pieces ---------------------------------------------------------------------------


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


class SecretInfo(BaseModel):
    """What may be shown of a stored secret."""

    hint: str = Field(description="a masked form, e.g. whsec_…a1b2")
    created_at: datetime
    expires_at: datetime | None = Field(
        default=None, description="set when the secret was rotated out; valid until then"
    )
    active: bool


class EntityOut(BaseModel):
    id: str
    version: int = Field(description="the entity's version; also its ETag")
    created_at: datetime
    updated_at: datetime


class SecretResult(BaseModel):
    secret: str | None = Field(
        default=None,
        description="the whole secret: only in the answer that created or rotated it",
    )


# -- webhooks (inbound) ----------------------------------------------------------------------


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


# -- subscriptions (outbound) ----------------------------------------------------------------


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


# -- workflows -------------------------------------------------------------------------------


class WorkflowIn(Strict):
    """A workflow definition for the bundled local engine: ordered nodes."""

    id: EntityId | None = Field(default=None, description="made by the server when absent")
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Text | None = None
    nodes: list[Node] = Field(default_factory=list, max_length=500)

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, value: list[Node]) -> list[Node]:
        seen: set[str] = set()
        for node in value:
            if node.id in seen:
                raise ValueError(f"node id {node.id!r} is used twice")
            seen.add(node.id)
        return value


class WorkflowOut(EntityOut):
    name: str | None = None
    description: str | None = None
    nodes: list[Node]


class WorkflowList(BaseModel):
    items: list[WorkflowOut]
    next_cursor: str | None = None


# -- rotation --------------------------------------------------------------------------------


class RotateWebhookSecretIn(Strict):
    secret: SecretText | None = Field(default=None, description="generated when absent")


class RotateSubscriptionSecretIn(Strict):
    secret: SubscriptionSecretText | None = Field(default=None, description="generated when absent")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return _check_subscription_secret(value)


# -- list queries ----------------------------------------------------------------------------

Limit = Annotated[int, Field(ge=1, le=500, description="page size")]
Cursor = Annotated[str, StringConstraints(max_length=512), Field(description="from `next_cursor`")]


class ListQuery(Strict):
    limit: Limit = 100
    cursor: Cursor | None = None


class WebhookQuery(ListQuery):
    provider: Provider | None = None
    enabled: bool | None = None
    workflow_id: ExternalId | None = Field(default=None, description="bound to this workflow")


class SubscriptionQuery(ListQuery):
    enabled: bool | None = None
    event_type: ExternalId | None = Field(default=None, description="that want this event type")
    workflow_id: ExternalId | None = Field(
        default=None, description="that receive this workflow's events"
    )


class WorkflowQuery(ListQuery):
    pass


class WriteQuery(Strict):
    dry_run: bool = Field(
        default=False, description="validate and report what would change; write nothing"
    )


# -- lifecycle events over HTTP --------------------------------------------------------------

EventId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[!-~]+$")]
EventSource = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[!-~]+$")]


class _Publish(Strict):
    id: EventId | None = Field(default=None, description="the CloudEvents id; made when absent")
    source: EventSource | None = Field(default=None, description="the CloudEvents source")

    @field_validator("data", check_fields=False)
    @classmethod
    def _named(cls, value: LifecycleEvent) -> LifecycleEvent:
        if not value.run_id or not value.workflow_id:
            raise ValueError("run_id and workflow_id must not be empty")
        return value


class PublishWorkflowStarted(_Publish):
    type: Literal["workflow.started"]
    data: WorkflowStarted


class PublishWorkflowCompleted(_Publish):
    type: Literal["workflow.completed"]
    data: WorkflowCompleted


class PublishWorkflowFailed(_Publish):
    type: Literal["workflow.failed"]
    data: WorkflowFailed


class PublishNodeCompleted(_Publish):
    type: Literal["node.completed"]
    data: NodeCompleted


class PublishErrorOccurred(_Publish):
    type: Literal["error.occurred"]
    data: ErrorOccurred


class PublishStatusChanged(_Publish):
    type: Literal["status.changed"]
    data: StatusChanged


PublishEvent = Annotated[
    PublishWorkflowStarted
    | PublishWorkflowCompleted
    | PublishWorkflowFailed
    | PublishNodeCompleted
    | PublishErrorOccurred
    | PublishStatusChanged,
    Field(discriminator="type"),
]


class PublishEventIn(RootModel[PublishEvent]):
    """A lifecycle event to publish to ``workflow-events`` (keyed by its run id)."""


class PublishedOut(BaseModel):
    id: str = Field(description="the CloudEvents id")
    type: str
    run_id: str
    topic: str
    partition: int
    offset: int


# -- errors ----------------------------------------------------------------------------------


class Health(BaseModel):
    status: str
    checks: dict[str, bool] | None = None
