"""The admin API's request and response shapes: the pieces every kind shares.

These pydantic models validate what clients send and shape what the API
answers; the OpenAPI document at ``/openapi.json`` is generated from them
(see :mod:`services.admin.openapi`). Each kind's own shapes are in
:mod:`.webhook_models`, :mod:`.subscription_models` and :mod:`.workflow_models`;
a lifecycle event published over HTTP is in :mod:`.publish_models`. The stored
entities themselves are :mod:`shared.entities`; the ``*In`` models are their
writable parts.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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


class Strict(BaseModel):
    """Request bodies: unknown fields are errors (a typo should not pass silently)."""

    model_config = ConfigDict(extra="forbid")


# -- shared pieces ---------------------------------------------------------------------------


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


# -- list queries ----------------------------------------------------------------------------

Limit = Annotated[int, Field(ge=1, le=500, description="page size")]
Cursor = Annotated[str, StringConstraints(max_length=512), Field(description="from `next_cursor`")]


class ListQuery(Strict):
    limit: Limit = 100
    cursor: Cursor | None = None


class WriteQuery(Strict):
    dry_run: bool = Field(
        default=False, description="validate and report what would change; write nothing"
    )


# -- errors ----------------------------------------------------------------------------------


class Health(BaseModel):
    status: str
    checks: dict[str, bool] | None = None
