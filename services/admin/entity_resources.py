"""The resource of each entity kind: webhooks, subscriptions and workflows.

What is particular to a kind (its models, its list filters, how its secrets are
made) is here; the flows they share are :class:`.resources.Resource`'s.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.crypto import generate_subscription_secret
from shared.entities import Subscription, Webhook, Workflow, event_pattern_matches

from .context import AdminContext
from .controls import SubscriptionControls
from .headers import masked, sealed_headers
from .resources import Resource, utcnow
from .subscription_models import (
    RotateSubscriptionSecretIn,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionQuery,
)
from .web import invalid
from .webhook_models import RotateWebhookSecretIn, WebhookIn, WebhookList, WebhookOut, WebhookQuery
from .workflow_models import WorkflowIn, WorkflowList, WorkflowOut, WorkflowQuery


class WebhookResource(Resource[Webhook]):
    kind = Webhook
    plural = "webhooks"
    label = "webhook"
    id_prefix = "wh_"
    in_model = WebhookIn
    out_model = WebhookOut
    list_model = WebhookList
    query_model = WebhookQuery
    rotate_model = RotateWebhookSecretIn

    def matches(self, entity: Webhook, query: Any) -> bool:
        q: WebhookQuery = query
        return (
            (q.provider is None or entity.provider == q.provider)
            and (q.enabled is None or entity.enabled == q.enabled)
            and (
                q.workflow_id is None
                or any(b.workflow_id == q.workflow_id for b in entity.bindings)
            )
        )

    def new_secret(self, entity: Webhook) -> str | None:
        if entity.allow_unsigned or any(s.active(utcnow()) for s in entity.secrets):
            return None
        return self.generate(entity)

    def generate(self, entity: Webhook) -> str | None:
        if entity.provider == "generic":
            return generate_subscription_secret()  # Standard Webhooks' format
        if entity.provider == "slack":
            raise invalid(
                ["body", "secret"], "a Slack webhook needs Slack's signing secret", "missing"
            )
        return _secrets.token_urlsafe(32)


class SubscriptionResource(SubscriptionControls, Resource[Subscription]):
    kind = Subscription
    plural = "subscriptions"
    label = "subscription"
    id_prefix = "sub_"
    in_model = SubscriptionIn
    out_model = SubscriptionOut
    list_model = SubscriptionList
    query_model = SubscriptionQuery
    rotate_model = RotateSubscriptionSecretIn

    def spec(self, body: Any, current: Subscription | None) -> dict[str, Any]:
        data = super().spec(body, current)
        # Who disabled it and why stays only while it stays disabled.
        keep = current is not None and not body.enabled and not current.enabled
        data["disabled_reason"] = current.disabled_reason if keep and current else None
        data["client_certificate"] = None  # its stored form needs the id: see build()
        return data

    def build(
        self, entity_id: str, body: Any, current: Subscription | None, now: datetime
    ) -> tuple[Subscription, str | None]:
        entity, shown = super().build(entity_id, body, current, now)
        # The body's header values, sealed: never stored in plaintext (see headers.py).
        sealed = sealed_headers(self.ctx.box, entity, entity.headers, current)
        return entity.model_copy(update={"encrypted_headers": sealed, "headers": {}}), shown

    def out(self, entity: Subscription, secret: str | None = None) -> BaseModel:
        shown = entity.model_copy(update={"headers": masked(entity), "encrypted_headers": {}})
        return super().out(shown, secret)

    def patch_base(self, current: Subscription, fields: set[str]) -> dict[str, Any]:
        data = super().patch_base(current, fields)
        data["headers"] = masked(current)  # a patch without headers keeps them
        return data

    def matches(self, entity: Subscription, query: Any) -> bool:
        q: SubscriptionQuery = query
        if q.enabled is not None and entity.enabled != q.enabled:
            return False
        if q.event_type is not None and not any(
            event_pattern_matches(p, q.event_type) for p in entity.events
        ):
            return False
        return (
            q.workflow_id is None or not entity.workflow_ids or q.workflow_id in entity.workflow_ids
        )

    def new_secret(self, entity: Subscription) -> str | None:
        if any(s.active(utcnow()) for s in entity.secrets):
            return None
        return generate_subscription_secret()

    def generate(self, entity: Subscription) -> str | None:
        return generate_subscription_secret()


class WorkflowResource(Resource[Workflow]):
    kind = Workflow
    plural = "workflows"
    label = "workflow"
    id_prefix = "wf_"
    in_model = WorkflowIn
    out_model = WorkflowOut
    list_model = WorkflowList
    query_model = WorkflowQuery


Factory = Callable[[AdminContext], Resource[Any]]
RESOURCES: tuple[Factory, ...] = (WebhookResource, SubscriptionResource, WorkflowResource)
