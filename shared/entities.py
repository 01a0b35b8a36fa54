"""Configuration entities as they live on the compacted ``config`` topic.

Key ``<kind>/<id>``; value the entity's whole state; a tombstone (null value)
deletes. Secrets are stored encrypted (see :mod:`shared.crypto`); these models
never hold a plaintext secret.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import Message

Provider = Literal["generic", "github", "gitlab", "slack"]
EntityKind = Literal["webhook", "subscription", "workflow"]


class StoredSecret(BaseModel):
    """One secret, encrypted with the service key; ``expires_at`` set once rotated out."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    ciphertext: str
    hint: str = Field(description="a masked form safe to show, e.g. whsec_…a1b2")
    created_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    per_second: float = Field(gt=0)
    burst: int = Field(default=0, ge=0, description="0 means per_second rounded up")


class ClientCertificate(BaseModel):
    """A subscription's client certificate for mutual TLS: the PEM chain as given, its key
    encrypted like the secrets (never shown again), and what may be shown of it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    certificate: str = Field(description="PEM: the certificate, then any intermediates")
    key: StoredSecret = Field(description="the private key (PEM), encrypted")
    fingerprint: str = Field(description="SHA-256 of the certificate (DER), hex")
    subject: str
    not_after: datetime


Ordering = Literal["none", "run"]


class Binding(BaseModel):
    """Which workflow an inbound webhook starts, for which events."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    workflow_id: str = Field(min_length=1, max_length=200)
    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    filter: str | None = Field(default=None, description="a JMESPath expression on the event")

    def matches_event(self, event_type: str) -> bool:
        return any(event_pattern_matches(p, event_type) for p in self.events)


def event_pattern_matches(pattern: str, event_type: str) -> bool:
    """``*`` matches all; ``pull_request.*`` matches ``pull_request`` and its actions."""
    if pattern == "*" or pattern == event_type:
        return True
    if pattern.endswith(".*") and event_type == pattern[:-2]:
        return True
    return fnmatch.fnmatchcase(event_type, pattern)


class Entity(Message):
    """Common fields of every configuration entity."""

    kind: ClassVar[EntityKind]
    id: str
    version: int = Field(default=1, ge=1, description="the ETag: bumped on every write")
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.id}"


class Webhook(Entity):
    ce_type: ClassVar[str] = "hookline.config.webhook"
    kind: ClassVar[EntityKind] = "webhook"

    provider: Provider = "generic"
    description: str | None = None
    secrets: list[StoredSecret] = Field(default_factory=list)
    allow_unsigned: bool = False
    allow_legacy_sha1: bool = False
    allowed_cidrs: list[str] = Field(default_factory=list)
    rate_limit: RateLimit | None = None
    enabled: bool = True
    bindings: list[Binding] = Field(default_factory=list)
    ack_text: str | None = Field(default=None, description="Slack: the immediate reply")


class Subscription(Entity):
    ce_type: ClassVar[str] = "hookline.config.subscription"
    kind: ClassVar[EntityKind] = "subscription"

    url: str
    description: str | None = None
    secrets: list[StoredSecret] = Field(default_factory=list)
    events: list[str] = Field(default_factory=lambda: ["*"])
    workflow_ids: list[str] | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    encrypted_headers: dict[str, str] = Field(
        default_factory=dict,
        description="custom headers: name → value sealed as secrets are (see header_key)",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="plaintext headers of records written before they were sealed; read, "
        "never written (hookline rekey seals them)",
    )
    rate_limit: RateLimit | None = None
    # Delivery controls (docs/delivery.md "Per-subscription controls"); each left at its
    # default costs a delivery nothing beyond reading it.
    retry_schedule: list[float] | None = Field(
        default=None, description="seconds between attempts; the service's schedule when null"
    )
    timeout: float | None = Field(
        default=None, description="request timeout in seconds; the service's when null"
    )
    paused: bool = False
    ordering: Ordering = "none"
    client_certificate: ClientCertificate | None = None

    @property
    def client_key_entity(self) -> str:
        """The associated data of the client key's ciphertext (apart from the secrets')."""
        return f"{self.key}#client_certificate"

    def header_key(self, name: str) -> str:
        """The associated data of a sealed header value: a value moved to another header
        or subscription does not decrypt."""
        return f"{self.key}/headers/{name}"

    @property
    def header_names(self) -> list[str]:
        return list(dict.fromkeys([*self.headers, *self.encrypted_headers]))

    def wants(self, event_type: str, workflow_id: str | None) -> bool:
        if not self.enabled:
            return False
        if not any(event_pattern_matches(p, event_type) for p in self.events):
            return False
        return not self.workflow_ids or workflow_id in self.workflow_ids


NodeKind = Literal["log", "http", "sleep", "fail"]


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=200)
    kind: NodeKind
    config: dict[str, Any] = Field(default_factory=dict)


class Workflow(Entity):
    ce_type: ClassVar[str] = "hookline.config.workflow"
    kind: ClassVar[EntityKind] = "workflow"

    name: str | None = None
    description: str | None = None
    nodes: list[Node] = Field(default_factory=list)


ENTITY_TYPES: dict[EntityKind, type[Entity]] = {
    "webhook": Webhook,
    "subscription": Subscription,
    "workflow": Workflow,
}
