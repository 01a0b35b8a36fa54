"""Event types and event ids, per provider, and the dedupe id of an inbound event.

The event type is what bindings match (``pull_request.opened``, ``push``);
the event id is the provider's own delivery id, so a redelivery of the same
event carries the same id and the dispatcher can drop it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from ulid import ULID

from shared.errors import MalformedRequest

from ._body import ParsedBody

MAX_LENGTH = 200
# A fixed namespace: the same (webhook, provider id) gives the same CloudEvents id forever.
DEDUPE_NAMESPACE = uuid.UUID("5b0f3c1e-7d4a-4f7e-9a57-6e2f1c0b9d11")
_NAMESPACE_BYTES = DEDUPE_NAMESPACE.bytes


def _clean(value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_LENGTH or not value.isprintable():
        raise MalformedRequest(f"{what} is empty, too long or not printable")
    return value


def _str_field(payload: Any, name: str) -> str | None:
    if isinstance(payload, dict):
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def normalize_gitlab_event(header: str, payload: Any) -> str:
    """``Push Hook`` → ``push``; ``Merge Request Hook`` → ``merge_request``;
    ``System Hook`` → ``system.<event_name>`` (system hooks name their event in the body)."""
    name = header.strip()
    if name.endswith(" Hook"):
        name = name[: -len(" Hook")]
    name = "_".join(name.lower().split())
    if name == "system":
        detail = _str_field(payload, "event_name") or _str_field(payload, "object_kind")
        if detail:
            return f"system.{detail}"
    return name


def event_type(provider: str, headers: Mapping[str, str], body: ParsedBody) -> str:
    payload = body.payload
    if provider == "github":
        name = headers.get("x-github-event")
        if not name:
            raise MalformedRequest("missing X-GitHub-Event")
        action = _str_field(payload, "action")
        return _clean(f"{name.strip()}.{action}" if action else name, "event type")
    if provider == "gitlab":
        name = headers.get("x-gitlab-event")
        if not name:
            raise MalformedRequest("missing X-Gitlab-Event")
        return _clean(normalize_gitlab_event(name, payload), "event type")
    if provider == "slack":
        return _clean(slack_event_type(body), "event type")
    name = headers.get("x-webhook-event") or _str_field(payload, "type") or "webhook"
    return _clean(name, "event type")


def slack_event_type(body: ParsedBody) -> str:
    """``url_verification``, ``event_callback.<type>``, ``slash_command``, ``block_actions``…"""
    payload = body.payload
    kind = _str_field(payload, "type")
    if kind == "event_callback":
        inner = _str_field(payload.get("event"), "type")
        return f"event_callback.{inner}" if inner else kind
    if kind:
        return kind
    if body.form is not None and "command" in body.form:
        return "slash_command"
    return "slack"


def provider_event_id(provider: str, headers: Mapping[str, str], body: ParsedBody) -> str | None:
    """The provider's delivery id, or ``None`` when it sends none."""
    if provider == "github":
        found = headers.get("x-github-delivery")
    elif provider == "gitlab":
        found = headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid")
    elif provider == "slack":
        found = _str_field(body.payload, "event_id")
    else:
        found = headers.get("webhook-id")
    return _clean(found, "event id") if found else None


def new_event_id() -> str:
    return str(ULID())


def dedupe_id(webhook_id: str, event_id: str) -> str:
    """The CloudEvents id: one per (webhook, provider id); GitHub reuses ids across hooks.

    ``uuid.uuid5`` worked out by hand (a unit test holds the two equal): the SHA-1 of
    the namespace and the name, with the version and variant bits set, formatted
    without building a ``UUID`` object, a fifth of the cost on every request.
    """
    # SHA-1 as UUIDv5 defines it: an id, not a security boundary.
    name = _NAMESPACE_BYTES + f"{webhook_id}\n{event_id}".encode()
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
