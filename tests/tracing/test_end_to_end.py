"""One signed webhook through every service is one trace, as the collector receives it.

The real services run as processes (``tests/e2e/stack.py``), exporting with the OTLP
exporter to a receiver the test runs on loopback (``testkit/otlp.py``). The subscriber
fails its first request once, so a retry is in the trace too.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription, webhook, workflow
from testkit.kafka import wait_until
from testkit.otlp import Collector, ReceivedSpan
from testkit.receivers import Receiver
from tests.e2e.stack import Stack, running

GITHUB_SECRET = "trace-github-secret"
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NODES = ("checkout", "build")
EVENTS = 2 + 1 + len(NODES) + 1 + 1  # queued, running, started, nodes, completed, succeeded


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


@pytest.mark.kafka
@pytest.mark.slow
async def test_one_signed_push_is_one_trace_from_the_provider_to_the_subscriber(
    settings: Settings, topics: Topics, fixtures_dir: Path, tmp_path: Path
) -> None:
    async with Collector() as collector, Receiver() as receiver:
        receiver.script("/hook", [500])  # the first request fails: its retry joins the trace
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            workflow("wf-trace", nodes=[{"id": n, "kind": "log"} for n in NODES]),
            webhook(
                "gh-trace",
                provider="github",
                secrets=[GITHUB_SECRET],
                bindings=[{"workflow_id": "wf-trace", "events": ["push"]}],
            ),
            subscription(
                "sub-trace", url=receiver.url("/hook"), secrets=[RECEIVER_SECRET], events=["*"]
            ),
        )
        stack = Stack(
            settings,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_TRACES_SAMPLER="always_on",
        )
        for service in ("ingress", "dispatcher", "delivery"):
            stack.add(service)
        async with running(stack):
            body = (fixtures_dir / "github" / "push" / "payload.json").read_bytes()
            digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    f"{stack.url()}/webhooks/gh-trace/github",
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "x-github-event": "push",
                        "x-github-delivery": str(uuid.uuid4()),
                        "x-hub-signature-256": f"sha256={digest}",
                    },
                )
            assert answer.status_code == 202, answer.text
            try:
                await wait_until(
                    lambda: len(receiver.on("/hook")) >= EVENTS + 1,
                    timeout=60,
                    message="every event delivered, and the one retry",
                )

                def complete(spans: list[ReceivedSpan]) -> bool:
                    posts = [s for s in spans if s.kind == "client" and s.name == "POST"]
                    nodes = [s for s in spans if s.name.startswith("node ")]
                    return len(posts) >= EVENTS + 1 and len(nodes) >= len(NODES)

                await collector.wait_for(complete, timeout=30)
            except AssertionError:
                print(stack.logs()[-6000:])
                raise
            logs = stack.logs()

    spans = collector.spans
    ingress = [s for s in spans if s.kind == "server" and s.service == "hookline-ingress"]
    assert len(ingress) == 1
    root = ingress[0]
    trace_id = root.trace_id
    assert root.parent_span_id is None, "a request from an untrusted peer starts the trace"
    assert root.name == "POST /webhooks/{webhook_id}/github"
    assert root.attributes["http.response.status_code"] == 202
    assert root.attributes["hookline.webhook.id"] == "gh-trace"
    assert root.attributes["hookline.event.type"] == "push"

    # Everything that followed from the one request is in its trace ...
    mine = [s for s in spans if s.trace_id == trace_id]
    assert mine == spans, "no span of this flow started a trace of its own"
    by_id = _by_id(mine)
    for span in mine:
        if span is not root:
            assert span.parent_span_id in by_id, f"{span.name}: its parent is in the trace"

    # ... hop by hop: the dispatch continues the ingress' record, ...
    (dispatch,) = [s for s in mine if s.name == f"process {topics.inbound}"]
    assert dispatch.service == "hookline-dispatcher" and dispatch.kind == "consumer"
    assert dispatch.parent_span_id == root.span_id
    assert dispatch.attributes["messaging.system"] == "kafka"
    assert dispatch.attributes["messaging.destination.name"] == topics.inbound
    assert dispatch.attributes["messaging.consumer.group.name"] == f"{topics.prefix}dispatcher"
    assert isinstance(dispatch.attributes["messaging.kafka.message.offset"], int)
    (send,) = [s for s in mine if s.name == f"send {topics.workflow_commands}"]
    assert send.parent_span_id == dispatch.span_id
    run_id = send.attributes["hookline.run.id"]

    # ... the engine's run continues the command, one span per node, ...
    (run,) = [s for s in mine if s.name == "run wf-trace"]
    assert run.parent_span_id == send.span_id
    assert run.attributes["hookline.run.id"] == run_id
    nodes = {s.attributes["hookline.node.id"]: s for s in mine if s.name.startswith("node ")}
    assert set(nodes) == set(NODES)
    assert all(n.parent_span_id == run.span_id for n in nodes.values())

    # ... delivery continues every lifecycle event, one attempt span per request, ...
    intakes = [s for s in mine if s.name == f"process {topics.workflow_events}"]
    assert len(intakes) == EVENTS
    assert {i.attributes["hookline.run.id"] for i in intakes} == {run_id}
    assert {i.parent_span_id for i in intakes} == {send.span_id, run.span_id}
    attempts = [s for s in mine if s.kind == "client" and s.name == "POST"]
    assert len(attempts) == EVENTS + 1
    assert {a.parent_span_id for a in attempts} == {i.span_id for i in intakes}
    assert all(a.attributes["hookline.subscription.id"] == "sub-trace" for a in attempts)

    # ... the retry is a span of the same trace, linked to the attempt it follows, ...
    (failed,) = [a for a in attempts if a.attributes.get("http.response.status_code") == 500]
    assert failed.error
    (retry,) = [a for a in attempts if a.attributes["hookline.delivery.attempt"] == 2]
    assert retry.parent_span_id == failed.parent_span_id
    assert retry.links == [(trace_id, failed.span_id)]
    assert retry.attributes["http.request.resend_count"] == 1
    assert (
        retry.attributes["hookline.delivery.message_id"]
        == (failed.attributes["hookline.delivery.message_id"])
    )

    # ... and each request carried its attempt's traceparent to the subscriber.
    received = [r.headers["traceparent"].split("-") for r in receiver.on("/hook")]
    assert sorted((v, t, s) for v, t, s, _ in received) == sorted(
        ("00", trace_id, a.span_id) for a in attempts
    )
    assert all(int(flags, 16) & 1 for *_, flags in received), "sampled"

    # The log lines written inside a span name it.
    assert f'"trace_id":"{trace_id}"' in logs
