"""The ingress' spans: one HTTP server span per webhook request (only with tracing on).

An incoming ``traceparent`` is continued only when the immediate peer is one of
``HOOKLINE_TRUSTED_PROXIES`` (a proxy that starts or forwards traces for us); from
anyone else it is ignored and the request starts a new trace, so an outside caller can
neither join its requests to our traces nor choose their ids. No link is made to an
untrusted context either: it would be the caller's to forge.

The accepted record carries the span's context as ``ce_traceparent`` (see
:func:`stamp_record`), which the dispatcher continues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span
from starlette.types import Message, Receive, Scope, Send

from shared.cloudevents import KafkaRecord
from shared.tracing.propagation import context_from, current_kafka_headers, tracer

from ._network import parse_ip

if TYPE_CHECKING:
    from ._handler import WebhookIngress


def _header(raw: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in raw:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def trusted_parent(ingress: WebhookIngress, scope: Scope) -> Context:
    """The incoming trace context when the peer is a trusted proxy; else a new root."""
    client = scope.get("client")
    address = parse_ip(client[0]) if client else None
    if address is None or not ingress.trusted_proxies.trusts(address):
        return Context()
    raw = scope["headers"]
    return context_from(_header(raw, b"traceparent"), _header(raw, b"tracestate"))


def _route(provider: str) -> str:
    return "/webhooks/{webhook_id}" + ("" if provider == "generic" else f"/{provider}")


async def traced_webhook(
    ingress: WebhookIngress,
    scope: Scope,
    receive: Receive,
    send: Send,
    provider: str,
    webhook_id: str,
) -> None:
    """``ingress.handle`` inside an HTTP server span (semantic conventions for HTTP)."""
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    client = scope.get("client")
    peer = client[0] if client else None
    route = _route(provider)
    attributes: dict[str, Any] = {
        "http.request.method": scope.get("method", "POST"),
        "http.route": route,
        "url.path": scope.get("path", ""),
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
        "hookline.webhook.id": webhook_id,
        "hookline.provider": provider,
    }
    server = scope.get("server")
    if server:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    if peer:
        attributes["network.peer.address"] = peer
        forwarded = [v.decode("latin-1") for k, v in raw if k.lower() == b"x-forwarded-for"]
        source = ingress.trusted_proxies.client_ip(peer, forwarded)
        if source:
            attributes["client.address"] = source
    agent = _header(raw, b"user-agent")
    if agent:
        attributes["user_agent.original"] = agent[:256]
    status = 0

    async def answered(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    with tracer().start_as_current_span(
        f"POST {route}",
        context=trusted_parent(ingress, scope),
        kind=SpanKind.SERVER,
        attributes=attributes,
    ) as span:
        await ingress.handle(scope, receive, answered, provider, webhook_id)
        if status:
            span.set_attribute("http.response.status_code", status)
            # Server spans: a 4xx is the client's doing, not an error of ours.
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))


def stamp_record(record: KafkaRecord, event_type: str, provider_event_id: str) -> None:
    """The accepted event: its attributes on the request's span, the span's context on
    the record (``ce_traceparent``, the CloudEvents distributed-tracing extension)."""
    span = get_current_span()
    span.set_attributes(
        {"hookline.event.type": event_type, "hookline.provider_event_id": provider_event_id}
    )
    record.headers.extend(current_kafka_headers())
