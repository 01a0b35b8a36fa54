"""A workflow definition's request and response shapes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from shared.entities import Node

from .models import EntityId, EntityOut, ListQuery, Strict, Text


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


class WorkflowQuery(ListQuery):
    pass
