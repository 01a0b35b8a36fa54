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

from starlette.types import Receive, Scope, Send

from shared import tracing
from shared.config_view import ConfigView
from shared.entities import Webhook
from shared.errors import (
    BrokerUnavailable,
    ClientDisconnected,
    Forbidden,
    HttpProblem,
    InternalError,
    MalformedRequest,
    NotFound,
    RateLimited,
    RequestTimeout,
    SecretError,
    SignatureRejected,
    Unauthorized,
    Unavailable,
)
from shared.settings import Settings

from . import _metrics as metrics
from ._body import ParsedBody, check_media_type, parse_body, read_asgi_body
from ._edge import TIMEOUT_EXTENSION
from ._events import dedupe_id, event_type, new_event_id, provider_event_id
from ._headers import filter_headers
from ._network import TrustedProxies, ip_allowed
from ._publisher import Publisher
from ._ratelimit import RateLimiter
from ._record import received_record, verification_used
from ._reply import Reply, json_reply, problem_reply, text_reply
from ._signatures import (
    verify_github,
    verify_gitlab,
    verify_slack,
    verify_standard,
)
from ._tracing import stamp_record

log = logging.getLogger("hookline.ingress")

# Slack gives up after 3 s; its replies must come (with the write acknowledged) before that.
SLACK_DEADLINE = 2.5
RETRY_AFTER = 5
# Encoded once: a bug answers without a further chance to fail.
INTERNAL_ERROR = problem_reply(InternalError("the request could not be handled"))


class WebhookIngress:
    """The request pipeline; bound to a config view and a publisher by the app's lifespan.

    It is an ASGI handler for one webhook route: ``handle(scope, receive, send,
    provider, webhook_id)`` reads the request off the ASGI channels and writes the
    answer back, without request or response objects (this is the hot path).
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._limiter = RateLimiter()
        self._proxies = TrustedProxies(settings.trusted_proxies)
        self._view: ConfigView | None = None
        self._publisher: Publisher | None = None

    @property
    def trusted_proxies(self) -> TrustedProxies:
        return self._proxies

    def bind(self, view: ConfigView | None, publisher: Publisher | None) -> None:
        self._view = view
        self._publisher = publisher

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, provider: str, webhook_id: str
    ) -> None:
        started = time.perf_counter()
        fields: dict[str, Any] = {
            "webhook_id": webhook_id,
            "provider": provider,
            "event_type": None,
            "event_id": None,
            "source_ip": None,
        }
        try:
            reply = await self._process(scope, receive, provider, webhook_id, fields)
            outcome = "accepted"
        except HttpProblem as refusal:
            reply = problem_reply(refusal)
            # The metric's outcome is the problem's slug (malformed, unauthorized, …).
            outcome = refusal.slug
            fields["reason"] = refusal.detail
        except ClientDisconnected:
            timed_out = scope.get("extensions", {}).get(TIMEOUT_EXTENSION)
            if timed_out is None:
                fields["reason"] = "client disconnected before its body was read"
            else:
                # The connection's protocol answered 408 and closed it (_edge.py).
                fields["reason"] = f"the body did not arrive within {timed_out['seconds']:g} s"
                fields["status"] = 408
                metrics.count(provider, RequestTimeout.slug, time.perf_counter() - started)
            _log_request(logging.INFO, fields)
            return
        except Exception:
            # A bug, not the request's fault: answer like Starlette's error middleware would.
            log.exception("webhook request failed", extra=fields)
            reply, outcome = INTERNAL_ERROR, "error"
        elapsed = time.perf_counter() - started
        try:
            # The answer goes out first; the bookkeeping below is not the provider's wait.
            await reply.send(send)
        finally:
            metrics.count(provider, outcome, elapsed)
            fields["status"] = reply.status
            fields["latency_ms"] = round(elapsed * 1000, 3)
            _log_request(logging.WARNING if reply.status >= 500 else logging.INFO, fields)

    async def _process(
        self,
        scope: Scope,
        receive: Receive,
        provider: str,
        webhook_id: str,
        fields: dict[str, Any],
    ) -> Reply:
        view, publisher = self._view, self._publisher
        if view is None or publisher is None:
            raise Unavailable("the ingress is starting or stopping", retry_after=RETRY_AFTER)
        webhook = view.webhook(webhook_id)
        if webhook is None or not webhook.enabled or webhook.provider != provider:
            raise NotFound("unknown or disabled webhook")

        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        # First value wins, like Starlette's Headers.get (hence the reversed walk).
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in reversed(raw_headers)
        }
        client = scope.get("client")
        source_ip = self._proxies.client_ip(
            client[0] if client else None, _forwarded_for(raw_headers)
        )
        fields["source_ip"] = source_ip
        if not ip_allowed(source_ip, webhook.allowed_cidrs):
            raise Forbidden("source address not allowed")
        wait = self._limiter.check(webhook.id, webhook.rate_limit)
        if wait > 0:
            raise RateLimited("rate limit reached", retry_after=max(1, math.ceil(wait)))

        content_type = headers.get("content-type")
        check_media_type(provider, content_type)
        body = await read_asgi_body(
            receive,
            declared_length=headers.get("content-length"),
            limit=self._settings.max_body_bytes,
        )
        self._verify(view, webhook, provider, headers, body)

        parsed = parse_body(provider, content_type, body)
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
            return json_reply(200, {"challenge": challenge})

        received_at = datetime.now(UTC)
        record = received_record(
            webhook_id=webhook.id,
            provider=webhook.provider,
            event_type=kind,
            provider_event_id=event_id,
            received_at=received_at,
            source_ip=source_ip,
            content_type=content_type or "application/octet-stream",
            headers=filter_headers(raw_headers),
            payload_encoding=parsed.encoding,
            payload=parsed.payload,
            payload_json=parsed.json_text,
            ce_id=dedupe_id(webhook.id, event_id),
            verification=verification_used(webhook, provider, headers, received_at),
        )
        if tracing.enabled:
            stamp_record(record, kind, event_id)
        reply = _accepted(provider, kind, event_id, parsed, webhook)
        # The parsed payload (hundreds of objects for a typical webhook) is not needed
        # past this point: dropped before the wait, so requests waiting for their
        # acknowledgement hold bytes only, and the garbage collector has little to
        # walk however many are in flight.
        del parsed
        deadline = self._settings.publish_timeout
        if provider == "slack":
            deadline = min(deadline, SLACK_DEADLINE)
        publish_started = time.perf_counter()
        try:
            await publisher.publish(record, timeout=deadline)
        except BrokerUnavailable as exc:
            raise Unavailable(f"event not stored: {exc}", retry_after=RETRY_AFTER) from exc
        finally:
            metrics.observe_publish(provider, time.perf_counter() - publish_started)
        return reply

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


def _log_request(level: int, fields: dict[str, Any]) -> None:
    """The one line per request. The record is made directly: ``Logger.log`` would
    also walk the stack for the caller's file and line, which the line never shows."""
    if log.isEnabledFor(level):
        log.handle(
            log.makeRecord(log.name, level, __file__, 0, "webhook request", (), None, extra=fields)
        )


def _forwarded_for(raw_headers: list[tuple[bytes, bytes]]) -> list[str]:
    return [v.decode("latin-1") for k, v in raw_headers if k.lower() == b"x-forwarded-for"]


def _accepted(
    provider: str, kind: str, event_id: str, parsed: ParsedBody, webhook: Webhook
) -> Reply:
    if provider == "github" and kind == "ping":
        return json_reply(200, {"id": event_id})
    if provider == "slack" and parsed.form is not None:
        # Slash commands and interactive requests: Slack shows this reply to the user.
        return text_reply(200, webhook.ack_text or "")
    return json_reply(202, {"id": event_id})
