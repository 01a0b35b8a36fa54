"""A lifecycle event published over HTTP: what is sent, and where it was written."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel, StringConstraints, field_validator

from shared.messages import (
    ErrorOccurred,
    LifecycleEvent,
    NodeCompleted,
    StatusChanged,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)

from .models import Strict

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
