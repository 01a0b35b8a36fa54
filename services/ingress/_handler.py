"""One webhook request, start to finish: the steps in the order they refuse.

404 unknown or disabled webhook (or the wrong provider route) → 403 source IP
outside the allowlist → 429 rate limit → 415 content type → 413 body size →
401 signature → 400 body, event type or id → publish (503 when Kafka does not
acknowledge in time) → 202 (200 for GitHub ``ping``, Slack's challenge and
Slack's interactive replies). Cheap refusals come first, and nothing is parsed
before the signature has been checked on the raw bytes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from shared.cloudevents import encode
from shared.config_view import ConfigView
from shared.entities import Webhook
from shared.errors import BrokerUnavailable, SecretError
from shared.messages import WebhookReceived
from shared.settings import Settings

from . import _metrics as metrics
from ._body import ParsedBody, check_media_type, parse_body, read_capped
from ._errors import (
    Forbidden,
    MalformedRequest,
    RateLimited,
    Refused,
    Unauthorized,
    Unavailable,
    UnknownWebhook,
)
from ._events import dedupe_id, event_type, new_event_id, provider_event_id
from ._headers import filter_headers
from ._network import TrustedProxies, ip_allowed
from ._publisher import Publisher
from ._ratelimit import RateLimiter
from ._signatures import (
    SignatureRejected,
    verify_github,
    verify_gitlab,
    verify_slack,
    verify_standard,
)

log = logging.getLogger("hookline.ingress")

# Slack gives up after 3 s; its replies must come (with the write acknowledged) before that.
SLACK_DEADLINE = 2.5
RETRY_AFTER = 5


class WebhookIngress:
    """The request pipeline; bound to a config view and a publisher by the app's lifespan."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._limiter = RateLimiter()
        self._proxies = TrustedProxies(settings.trusted_proxies)
        self._view: ConfigView | None = None
        self._publisher: Publisher | None = None

    def bind(self, view: ConfigView | None, publisher: Publisher | None) -> None:
        self._view = view
        self._publisher = publisher

    async def __call__(self, request: Request, provider: str) -> Response:
        started = time.perf_counter()
        fields: dict[str, Any] = {
            "webhook_id": request.path_params.get("webhook_id"),
            "provider": provider,
            "event_type": None,
            "event_id": None,
            "source_ip": None,
        }
        try:
            response = await self._process(request, provider, fields)
            outcome = "accepted"
        except Refused as refusal:
            response = _refusal_response(refusal)
            outcome = refusal.outcome
            fields["reason"] = refusal.reason
        elapsed = time.perf_counter() - started
        metrics.REQUESTS.labels(provider, outcome).inc()
        metrics.REQUEST_SECONDS.labels(provider).observe(elapsed)
        fields["status"] = response.status_code
        fields["latency_ms"] = round(elapsed * 1000, 3)
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        log.log(level, "webhook request", extra=fields)
        return response

    async def _process(self, request: Request, provider: str, fields: dict[str, Any]) -> Response:
        view, publisher = self._view, self._publisher
        if view is None or publisher is None:
            raise Unavailable("the ingress is starting or stopping", retry_after=RETRY_AFTER)
        webhook = view.webhook(request.path_params["webhook_id"])
        if webhook is None or not webhook.enabled or webhook.provider != provider:
            raise UnknownWebhook("unknown or disabled webhook")

        headers = request.headers
        peer = request.client.host if request.client else None
        source_ip = self._proxies.client_ip(peer, headers.getlist("x-forwarded-for"))
        fields["source_ip"] = source_ip
        if not ip_allowed(source_ip, webhook.allowed_cidrs):
            raise Forbidden("source address not allowed")
        wait = self._limiter.check(webhook.id, webhook.rate_limit)
        if wait > 0:
            raise RateLimited("rate limit reached", retry_after=max(1, math.ceil(wait)))

        check_media_type(provider, headers.get("content-type"))
        body = await read_capped(
            request.stream(),
            declared_length=headers.get("content-length"),
            limit=self._settings.max_body_bytes,
        )
        self._verify(view, webhook, provider, headers, body)

        parsed = parse_body(provider, headers.get("content-type"), body)
        kind = event_type(provider, headers, parsed)
        fields["event_type"] = kind
        event_id = provider_event_id(provider, headers, parsed) or new_event_id()
        fields["event_id"] = event_id

        if provider == "slack" and kind == "url_verification":
            challenge = (
                parsed.payload.get("challenge") if isinstance(parsed.payload, dict) else None
            )
            if not isinstance(challenge, str):
                raise MalformedRequest("url_verification without a challenge")
            return JSONResponse({"challenge": challenge})

        # Every field is built here from checked values: no second validation pass.
        received = WebhookReceived.model_construct(
            webhook_id=webhook.id,
            provider=webhook.provider,
            event_type=kind,
            provider_event_id=event_id,
            received_at=datetime.now(UTC),
            source_ip=source_ip,
            content_type=headers.get("content-type") or "application/octet-stream",
            headers=filter_headers(request.scope["headers"]),
            payload_encoding=parsed.encoding,
            payload=parsed.payload,
        )
        record = encode(
            received,
            key=webhook.id,
            source=f"/webhooks/{webhook.id}",
            event_id=dedupe_id(webhook.id, event_id),
            time=received.received_at,
        )
        deadline = self._settings.publish_timeout
        if provider == "slack":
            deadline = min(deadline, SLACK_DEADLINE)
        publish_started = time.perf_counter()
        try:
            await publisher.publish(record, timeout=deadline)
        except BrokerUnavailable as exc:
            raise Unavailable(f"event not stored: {exc}", retry_after=RETRY_AFTER) from exc
        finally:
            metrics.PUBLISH_SECONDS.labels(provider).observe(time.perf_counter() - publish_started)
        return _accepted(provider, kind, event_id, parsed, webhook)

    def _verify(
        self, view: ConfigView, webhook: Webhook, provider: str, headers: Any, body: bytes
    ) -> None:
        try:
            secrets = view.secrets(webhook)
        except SecretError as exc:
            log.error("webhook secrets do not decrypt", extra={"webhook_id": webhook.id})
            raise Unavailable("webhook secrets unusable", retry_after=60) from exc
        if not secrets:
            if webhook.allow_unsigned:
                return
            raise Unauthorized("webhook has no active secret and does not allow unsigned posts")
        now = self._clock()
        tolerance = self._settings.signature_tolerance
        try:
            if provider == "github":
                verify_github(headers, body, secrets, allow_legacy_sha1=webhook.allow_legacy_sha1)
            elif provider == "gitlab":
                verify_gitlab(headers, body, secrets, now=now, tolerance=tolerance)
            elif provider == "slack":
                verify_slack(headers, body, secrets, now=now, tolerance=tolerance)
            else:
                verify_standard(headers, body, secrets, now=now, tolerance=tolerance)
        except SignatureRejected as exc:
            raise Unauthorized(exc.reason) from None


def _accepted(
    provider: str, kind: str, event_id: str, parsed: ParsedBody, webhook: Webhook
) -> Response:
    if provider == "github" and kind == "ping":
        return JSONResponse({"id": event_id}, status_code=200)
    if provider == "slack" and parsed.form is not None:
        # Slash commands and interactive requests: Slack shows this reply to the user.
        return PlainTextResponse(webhook.ack_text or "", status_code=200)
    return JSONResponse({"id": event_id}, status_code=202)


def _refusal_response(refusal: Refused) -> Response:
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
    return JSONResponse(
        {"error": refusal.outcome, "detail": refusal.reason},
        status_code=refusal.status_code,
        headers=headers,
    )
