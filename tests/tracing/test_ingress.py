"""The ingress' span: an incoming traceparent is continued from a trusted proxy only.

The real app in-process (its lifespan, the real broker), tracing installed with an
in-memory exporter; the record on ``inbound`` is read back to see what it carries.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic
from tests.ingress.helpers import github_headers, ingress_client

SECRET = "trace-ingress-secret"
INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_SPAN = "00f067aa0ba902b7"
INCOMING = f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"


async def _post(
    settings: Settings, topics: Topics, fixtures_dir: Path, peer: str
) -> tuple[str, dict[str, bytes]]:
    """Post one signed push carrying ``INCOMING`` from ``peer``; the delivery id and the
    headers of the record it wrote."""
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh-traced", provider="github", secrets=[SECRET]),
    )
    body = (fixtures_dir / "github" / "push" / "payload.json").read_bytes()
    delivery = str(uuid.uuid4())
    headers = github_headers(SECRET, body, "push", delivery)
    headers.update({"content-type": "application/json", "traceparent": INCOMING})
    async with ingress_client(settings, client=(peer, 40000)) as http:
        answer = await http.post("/webhooks/gh-traced/github", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    records = await read_topic(settings.kafka_bootstrap_servers, topics.inbound, min_count=1)
    (record,) = records
    return delivery, record.headers


@pytest.mark.kafka
async def test_a_traceparent_from_an_untrusted_peer_is_not_continued(
    settings: Settings, topics: Topics, fixtures_dir: Path, spans: InMemorySpanExporter
) -> None:
    untrusted = settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
    delivery, headers = await _post(untrusted, topics, fixtures_dir, peer="192.0.2.7")

    (span,) = spans.get_finished_spans()
    context = span.get_span_context()
    assert context is not None
    assert span.parent is None, "a new root, not a child of the caller's span"
    assert f"{context.trace_id:032x}" != INCOMING_TRACE
    assert not span.links, "no link to a context the caller could have forged"
    assert span.attributes is not None
    assert span.attributes["hookline.provider_event_id"] == delivery
    assert span.attributes["client.address"] == "192.0.2.7"
    # The record continues the request's own trace, not the caller's.
    traceparent = headers["ce_traceparent"].decode()
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


@pytest.mark.kafka
async def test_a_traceparent_from_a_trusted_proxy_is_continued(
    settings: Settings, topics: Topics, fixtures_dir: Path, spans: InMemorySpanExporter
) -> None:
    trusted = settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
    _, headers = await _post(trusted, topics, fixtures_dir, peer="10.1.2.3")

    (span,) = spans.get_finished_spans()
    context = span.get_span_context()
    assert context is not None
    assert f"{context.trace_id:032x}" == INCOMING_TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == INCOMING_SPAN
    assert span.attributes is not None
    assert span.attributes["http.request.method"] == "POST"
    assert span.attributes["url.path"] == "/webhooks/gh-traced/github"
    assert span.attributes["http.route"] == "/webhooks/{webhook_id}/github"
    assert span.attributes["http.response.status_code"] == 202
    assert headers["ce_traceparent"].decode().startswith(f"00-{INCOMING_TRACE}-")


@pytest.mark.kafka
async def test_with_tracing_off_a_request_makes_no_span_and_its_record_no_trace_header(
    settings: Settings, topics: Topics, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import trace

    from shared.tracing import propagation

    def refuse() -> None:
        raise AssertionError("a tracing helper ran with tracing off")

    # Every helper starts from the tracer or the current span: both must go untouched.
    monkeypatch.setattr(propagation, "tracer", refuse)
    monkeypatch.setattr(trace, "get_current_span", refuse)
    trusted = settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
    _, headers = await _post(trusted, topics, fixtures_dir, peer="10.1.2.3")
    assert not any(name.startswith("ce_trace") for name in headers)
