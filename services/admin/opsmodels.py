"""Request and answer shapes of the operations data: deliveries, inbound events, dead
letters, replays and recoveries, and per-subscription health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)

from shared.messages import DeliveryOutcome, OperationKind, OperationStatus, SourceRecord

from .models import EntityId, ExternalId, ListQuery, Strict

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _rfc3339(value: Any) -> Any:
    # A query string is lax: "0.5" would otherwise pass as a Unix time.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _after_epoch(value: datetime) -> datetime:
    if value < EPOCH:
        raise ValueError("the time must be after 1970")
    return value


Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_after_epoch)]
Since = Annotated[Time | None, Field(description="from this time on (RFC 3339)")]
Until = Annotated[Time | None, Field(description="before this time (RFC 3339)")]
RequestId = Annotated[
    EntityId | None,
    Field(description="the request's id; the same id again answers the same job (idempotent)"),
]


# -- deliveries ------------------------------------------------------------------------------


class DeliveryQuery(ListQuery):
    subscription_id: ExternalId | None = None
    event_type: ExternalId | None = None
    outcome: DeliveryOutcome | None = Field(default=None, description="of the latest attempt")
    workflow_id: ExternalId | None = None
    run_id: ExternalId | None = None
    since: Since = None
    until: Until = None
    attempts: bool = Field(default=False, description="include each delivery's attempts")


class AttemptOut(BaseModel):
    attempt: int
    outcome: DeliveryOutcome
    status_code: int | None = None
    error: str | None = None
    latency_ms: float | None = None
    response_excerpt: str | None = None
    next_attempt_at: datetime | None = None
    attempted_at: datetime
    url: str | None = None
    webhook_id: str = Field(description="the webhook-id header it was sent with")


class DeliveryOut(BaseModel):
    id: str = Field(description="the delivery id")
    message_id: str = Field(description="the webhook-id header, the same on every attempt")
    subscription_id: str
    event_type: str
    workflow_id: str | None = None
    run_id: str | None = None
    outcome: DeliveryOutcome = Field(description="of the latest attempt")
    attempt_count: int
    first_attempt_at: datetime
    last_attempt_at: datetime
    status_code: int | None = None
    next_attempt_at: datetime | None = None
    attempts: list[AttemptOut] | None = Field(
        default=None, description="oldest first; in lists only with attempts=true"
    )


class DeliveryDetail(DeliveryOut):
    source: SourceRecord | None = None
    body: str | None = Field(default=None, description="the JSON body that was signed and sent")


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = None


class RedeliveryOut(BaseModel):
    delivery_id: str
    message_id: str
    subscription_id: str
    due_at: datetime


# -- inbound events --------------------------------------------------------------------------

InboundOutcome = Literal["triggered", "duplicate", "accepted"]


class InboundQuery(ListQuery):
    webhook_id: ExternalId | None = None
    provider: Literal["generic", "github", "gitlab", "slack"] | None = None
    event_type: ExternalId | None = None
    provider_event_id: ExternalId | None = None
    outcome: InboundOutcome | None = Field(
        default=None,
        description="triggered: started runs; duplicate: a redelivery of an event already "
        "received; accepted: on Kafka, no run linked to it",
    )
    replay_id: ExternalId | None = None
    since: Since = None
    until: Until = None


class RunOut(BaseModel):
    run_id: str
    workflow_id: str
    status: str = Field(description="the latest status.changed seen: queued, running, …")
    replay_id: str | None = None
    queued_at: datetime
    updated_at: datetime


class InboundOut(BaseModel):
    id: str = Field(description="in_<partition>_<offset> on the inbound topic")
    webhook_id: str
    provider: str
    event_type: str
    provider_event_id: str = Field(description="the provider's delivery id")
    received_at: datetime
    source_ip: str | None = None
    verification: str | None = Field(
        default=None, description="the scheme that verified it; unsigned when none was needed"
    )
    verified: bool | None = None
    outcome: InboundOutcome
    duplicate_of: str | None = None
    replay_id: str | None = None
    replay_of: str | None = None


class InboundDetail(InboundOut):
    content_type: str | None = None
    headers: dict[str, str] = Field(description="as received, credentials dropped")
    payload_encoding: str | None = None
    payload: Any = None
    runs: list[RunOut] = Field(description="the runs it started")


class InboundList(BaseModel):
    items: list[InboundOut]
    next_cursor: str | None = None


# -- dead letters ----------------------------------------------------------------------------


class DeadLetterQuery(ListQuery):
    source_topic: Annotated[str, StringConstraints(max_length=300)] | None = None
    reason: ExternalId | None = Field(default=None, description="the error code")
    since: Since = None
    until: Until = None


class DeadLetterOut(BaseModel):
    id: str = Field(description="dlq_<partition>_<offset> on the dead-letter topic")
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    reason: str | None = Field(default=None, description="the error code")
    message: str | None = Field(default=None, description="why, in words")
    service: str | None = None
    key: str | None = None
    size: int
    dead_lettered_at: datetime
    retried_at: datetime | None = Field(default=None, description="the latest retry")
    retry_id: str | None = None


class DeadLetterDetail(DeadLetterOut):
    headers: dict[str, str]
    excerpt: str | None = Field(default=None, description="the first KiB of the value")


class DeadLetterList(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None = None


class DeadLetterRetryOut(BaseModel):
    id: str = Field(description="the retry operation's id")
    dead_letter_id: str
    topic: str
    partition: int
    offset: int


# -- replays and recoveries ------------------------------------------------------------------


class _Window(Strict):
    @model_validator(mode="after")
    def _ordered(self) -> Self:
        until, since = getattr(self, "until", None), getattr(self, "since", None)
        if until is not None and since is not None and until <= since:
            raise ValueError("until must be after since")
        return self


class ReplayIn(_Window):
    id: RequestId = None
    since: Time = Field(description="RFC 3339, with a time zone")
    until: Time | None = None
    event_types: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = (
        Field(default=None, max_length=100, description="patterns, as in bindings; all if absent")
    )


class RecoverIn(_Window):
    id: RequestId = None
    since: Time = Field(description="RFC 3339, with a time zone")
    until: Time | None = None


class OperationOut(BaseModel):
    id: str
    kind: OperationKind
    status: OperationStatus
    requested_at: datetime
    updated_at: datetime
    webhook_id: str | None = None
    subscription_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    event_types: list[str] | None = None
    counts: dict[str, int] = Field(
        description="scanned, matched, and written (replays) or redelivered (recoveries)"
    )
    runs_started: int | None = Field(default=None, description="replays: runs it started so far")
    redelivered: int | None = Field(default=None, description="recoveries: deliveries sent again")
    delivery_ids: list[str] | None = Field(default=None, description="recoveries: at most 1000")
    error: str | None = None


class RecoverOut(OperationOut):
    redelivered: int = Field(description="deliveries handed to the delivery service so far")
    delivery_ids: list[str] = Field(description="those deliveries (at most 1000)")


class OperationList(BaseModel):
    items: list[OperationOut]
    next_cursor: str | None = None


class OperationQuery(ListQuery):
    kind: OperationKind | None = None


# -- health ----------------------------------------------------------------------------------


class WindowHealth(BaseModel):
    window: Literal["5m", "1h", "1d"]
    attempts: int = Field(description="requests made (hand-ons past an open breaker excluded)")
    succeeded: int
    success_rate: float | None = Field(description="None when no request was made")
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None


class HealthOut(BaseModel):
    subscription_id: str
    consecutive_failures: int
    breaker: Literal["closed", "open", "half_open"] = Field(
        description="inferred from the attempts: see docs/admin-api.md"
    )
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None
    windows: list[WindowHealth]
