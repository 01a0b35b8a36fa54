"""The messages that travel on hookline's topics, one pydantic model each.

These models are the edge: they validate what comes off a topic and shape what
goes on one. Inside a service, code passes these objects around as they are.
Each model's ``ce_type`` class variable is the CloudEvents type it travels as.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every topic message."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    ce_type: ClassVar[str]


# -- inbound -------------------------------------------------------------------------------

PayloadEncoding = Literal["json", "form", "text", "base64"]
Verification = Literal[
    "github-sha256",
    "github-sha1",
    "gitlab-token",
    "gitlab-signature",
    "standard-webhooks",
    "slack-v0",
    "unsigned",
]


def inbound_event_id(partition: int, offset: int) -> str:
    """The id of the inbound record at (partition, offset) of ``inbound``: ``in_<p>_<o>``.

    A position, not the CloudEvents id: a provider's redelivery carries the same
    CloudEvents id as the original (the ingress derives it from the provider's delivery
    id), yet it is a record of its own, and an operator needs to tell the two apart.
    """
    return f"in_{partition}_{offset}"


class ReplayMarker(BaseModel):
    """On an inbound record the admin API wrote again: which replay, and of what."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str = Field(description="the replay's id; part of the replayed runs' ids")
    requested_at: datetime
    of: str = Field(description="the inbound event id of the record replayed")


class WebhookReceived(Message):
    """A verified, normalized provider webhook, written by the ingress to ``inbound``."""

    ce_type: ClassVar[str] = "hookline.webhook.received"

    webhook_id: str
    provider: Literal["generic", "github", "gitlab", "slack"]
    event_type: str = Field(description="normalized, e.g. pull_request.opened or push")
    provider_event_id: str = Field(description="the provider's delivery id, else a new ULID")
    received_at: datetime
    source_ip: str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = Field(default_factory=dict, description="credentials removed")
    payload_encoding: PayloadEncoding = "json"
    payload: Any = None
    verification: Verification | None = Field(
        default=None,
        description="how the ingress verified the request (absent from older records)",
    )
    replay: ReplayMarker | None = Field(
        default=None, description="set on records written again by a replay; absent otherwise"
    )


class RunTrigger(BaseModel):
    """What started a run: carried by its command and by every lifecycle event of it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    webhook_id: str
    inbound_event_id: str = Field(description="``in_<partition>_<offset>`` of the inbound record")
    provider_event_id: str
    replay_id: str | None = Field(default=None, description="set when the run is a replay")


# -- workflow commands ---------------------------------------------------------------------


class RunRequested(Message):
    """A command to start one workflow run, written by the dispatcher to ``workflow-commands``."""

    ce_type: ClassVar[str] = "hookline.workflow.run_requested"

    run_id: str
    workflow_id: str
    webhook_id: str
    provider_event_id: str
    event_type: str
    requested_at: datetime
    input: WebhookReceived
    trigger: RunTrigger | None = None


# -- lifecycle events ----------------------------------------------------------------------

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    code: str
    message: str


class LifecycleEvent(Message):
    """What subscribers receive. ``ce_type`` is the event type itself.

    ``trigger`` is left out of the JSON when unknown (an engine that does not pass it on),
    so bodies of events without one stay as they were.
    """

    workflow_id: str
    run_id: str
    occurred_at: datetime
    trigger: RunTrigger | None = Field(
        default=None, description="the inbound event that started the run, when known"
    )

    @model_serializer(mode="wrap")
    def _drop_unknown_trigger(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("trigger", 0) is None:
            del data["trigger"]
        return data


class WorkflowStarted(LifecycleEvent):
    ce_type: ClassVar[str] = "workflow.started"


class WorkflowCompleted(LifecycleEvent):
    ce_type: ClassVar[str] = "workflow.completed"
    output: Any = None


class WorkflowFailed(LifecycleEvent):
    ce_type: ClassVar[str] = "workflow.failed"
    error: ErrorInfo


class NodeCompleted(LifecycleEvent):
    ce_type: ClassVar[str] = "node.completed"
    node_id: str
    output: Any = Field(default=None, description="a summary of the node's output")


class ErrorOccurred(LifecycleEvent):
    ce_type: ClassVar[str] = "error.occurred"
    error: ErrorInfo
    node_id: str | None = None


class StatusChanged(LifecycleEvent):
    ce_type: ClassVar[str] = "status.changed"
    from_: RunStatus | None = Field(default=None, alias="from")
    to: RunStatus


LIFECYCLE_EVENTS: tuple[type[LifecycleEvent], ...] = (
    WorkflowStarted,
    WorkflowCompleted,
    WorkflowFailed,
    NodeCompleted,
    ErrorOccurred,
    StatusChanged,
)
LIFECYCLE_EVENT_TYPES: tuple[str, ...] = tuple(m.ce_type for m in LIFECYCLE_EVENTS)


# -- delivery ------------------------------------------------------------------------------


class SourceRecord(BaseModel):
    """Where a lifecycle event was read from; ``webhook-id`` derives from it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    topic: str
    partition: int
    offset: int


DeliveryOutcome = Literal["succeeded", "failed", "exhausted", "disabled", "skipped"]


class DeliveryDue(Message):
    """A delivery waiting for its next attempt, on a ``delivery-retry.<tier>`` topic."""

    ce_type: ClassVar[str] = "hookline.delivery.due"

    delivery_id: str
    message_id: str = Field(description="the webhook-id header: same for every attempt")
    subscription_id: str
    event_type: str
    workflow_id: str | None = None
    source: SourceRecord
    body: str = Field(description="the exact JSON body that is signed and sent")
    attempt: int = Field(ge=1, description="the number of the attempt that is due")
    due_at: datetime
    first_attempted_at: datetime


class DeliveryAttempted(Message):
    """One attempt's record, on ``delivery-attempts`` (the delivery log)."""

    ce_type: ClassVar[str] = "hookline.delivery.attempted"

    delivery_id: str
    message_id: str
    subscription_id: str
    event_type: str
    workflow_id: str | None = None
    source: SourceRecord | None = None
    attempt: int
    outcome: DeliveryOutcome
    status_code: int | None = None
    error: str | None = Field(default=None, description="error class when no response came")
    latency_ms: float | None = None
    response_excerpt: str | None = Field(default=None, description="first 4 KiB of the body")
    next_attempt_at: datetime | None = None
    attempted_at: datetime
    url: str | None = None
    body: str | None = Field(default=None, description="kept so a redelivery can resend it")


HoldReason = Literal["paused", "ordered", "rate_limited"]


class DeliveryHeld(Message):
    """A delivery the delivery service keeps waiting, on ``delivery-holds``.

    Keyed ``<subscription_id>/<offset>`` on the partition of its source record (one owner
    writes it: the replica reading that partition of ``workflow-events``); a tombstone
    when it went out. No body: the event is read again from its source record.
    """

    ce_type: ClassVar[str] = "hookline.delivery.held"

    subscription_id: str
    source: SourceRecord
    run_id: str | None = None
    attempt: int = Field(ge=1, description="the number of the attempt it waits for")
    first_attempted_at: datetime
    due_at: datetime | None = Field(
        default=None, description="when it goes; null: when its turn comes or it is resumed"
    )
    reason: HoldReason


# -- operational events ----------------------------------------------------------------------


class OperationalEvent(Message):
    """What hookline tells about its own deliveries, so an operations channel hears of a
    failing receiver. On ``workflow-events``, keyed by the subscription it is about;
    subscribed to by naming the type (``*`` does not match it). The receiver is named by
    its host: a URL's path may hold a token."""

    subscription_id: str
    host: str | None = Field(default=None, description="the receiver's host, never its URL")
    occurred_at: datetime


class SubscriptionDisabled(OperationalEvent):
    ce_type: ClassVar[str] = "subscription.disabled"
    reason: str
    version: int = Field(description="the subscription's version that disabled it")


class DeliveryExhausted(OperationalEvent):
    ce_type: ClassVar[str] = "delivery.exhausted"
    delivery_id: str
    message_id: str
    event_type: str
    workflow_id: str | None = None
    attempts: int
    status_code: int | None = None
    error: str | None = None
    first_attempted_at: datetime
    left_out: int = Field(
        default=0,
        description="deliveries of this subscription exhausted since the previous notice "
        "without one of their own (at most one notice a minute per subscription)",
    )


class SubscriptionRecovered(OperationalEvent):
    ce_type: ClassVar[str] = "subscription.recovered"
    failing_since: datetime


OPERATIONAL_EVENTS: tuple[type[OperationalEvent], ...] = (
    SubscriptionDisabled,
    DeliveryExhausted,
    SubscriptionRecovered,
)
OPERATIONAL_EVENT_TYPES: tuple[str, ...] = tuple(m.ce_type for m in OPERATIONAL_EVENTS)
DeliverableEvent = LifecycleEvent | OperationalEvent
DELIVERABLE_EVENTS: tuple[type[Message], ...] = (*LIFECYCLE_EVENTS, *OPERATIONAL_EVENTS)


# -- operations ----------------------------------------------------------------------------

OperationKind = Literal["replay", "recovery", "dead_letter_retry"]
OperationStatus = Literal["running", "completed", "failed"]


class OperationState(Message):
    """The latest state of a replay, a recovery or a dead-letter retry.

    On the ``operations`` topic, keyed ``<kind>/<id>``, written by the admin API at the
    start, as it goes (``positions``: per partition, the next offset to read, so a job
    resumes where it stopped) and at the end. The admin view keeps the latest per key.
    """

    ce_type: ClassVar[str] = "hookline.operation.state"

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
    dead_letter_id: str | None = None
    topic: str | None = Field(default=None, description="the topic the job reads or writes")
    positions: dict[str, int] = Field(
        default_factory=dict,
        description="per partition: the next offset to read (a dead-letter retry: where the "
        "record was written)",
    )
    ends: dict[str, int] = Field(default_factory=dict, description="per partition: where to stop")
    counts: dict[str, int] = Field(default_factory=dict)
    ids: list[str] = Field(
        default_factory=list, description="the first 1000 deliveries a recovery sent again"
    )
    error: str | None = None
    owner: str | None = Field(default=None, description="the admin replica running the job")


# -- registry ------------------------------------------------------------------------------

TOPIC_MESSAGES: tuple[type[Message], ...] = (
    WebhookReceived,
    RunRequested,
    *LIFECYCLE_EVENTS,
    DeliveryDue,
    DeliveryAttempted,
    DeliveryHeld,
    *OPERATIONAL_EVENTS,
    OperationState,
)
