"""The end-to-end flow, shared by the plaintext and the secured end-to-end tests.

A signed GitHub push goes in; every lifecycle event of its run comes out, signed,
in order. The path: ingress (signature, 202 after Kafka's ack) → inbound →
dispatcher (binding match, transactional) → workflow-commands → local engine →
workflow-events → delivery → a receiver that verifies each request with the
independent ``standardwebhooks`` package.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx

from shared.cloudevents import decode_any
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription, webhook, workflow
from testkit.kafka import read_topic, wait_until
from tests.e2e.stack import Receiver, Stack, running

GITHUB_SECRET = "e2e-github-secret"
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes
EXPECTED = [
    ("status.changed", "queued"),
    ("status.changed", "running"),
    ("workflow.started", None),
    ("node.completed", "checkout"),
    ("node.completed", "build"),
    ("node.completed", "notify"),
    ("workflow.completed", None),
    ("status.changed", "succeeded"),
]


def _detail(data: dict[str, object]) -> object:
    return data.get("node_id") or data.get("to")


async def signed_push_reaches_the_subscriber(
    settings: Settings,
    topics: Topics,
    fixtures_dir: Path,
    tmp_path: Path,
    *,
    service_env: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Run ingress, dispatcher (local engine) and delivery, push once, check what arrives.

    ``service_env`` adds settings per service (its own Kafka user, for instance); the
    test's own reads and writes use the Kafka security in force where it is called.
    """
    async with Receiver(RECEIVER_SECRET) as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            workflow(
                "wf-demo",
                nodes=[
                    {"id": "checkout", "kind": "log"},
                    {"id": "build", "kind": "log"},
                    {"id": "notify", "kind": "log"},
                ],
            ),
            webhook(
                "gh-main",
                provider="github",
                secrets=[GITHUB_SECRET],
                bindings=[{"workflow_id": "wf-demo", "events": ["push"]}],
            ),
            subscription("sub-e2e", url=receiver.url, secrets=[RECEIVER_SECRET], events=["*"]),
        )
        stack = Stack(settings, tmp_path, service_env=service_env)
        stack.add("ingress")
        stack.add("dispatcher")
        stack.add("delivery")
        async with running(stack):
            body = (fixtures_dir / "github" / "push" / "payload.json").read_bytes()
            signature = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
            delivery_id = str(uuid.uuid4())
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{stack.url()}/webhooks/gh-main/github",
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "x-github-event": "push",
                        "x-github-delivery": delivery_id,
                        "x-hub-signature-256": f"sha256={signature}",
                    },
                )
            assert response.status_code == 202, response.text

            def run_finished() -> bool:
                return any(
                    d.type == "status.changed" and d.data.get("to") == "succeeded"
                    for d in receiver.deliveries
                )

            try:
                await wait_until(run_finished, timeout=60, message="the run's last event")
                await wait_until(lambda: len(receiver.deliveries) >= len(EXPECTED), timeout=10)
            except AssertionError:
                print(stack.logs()[-6000:])
                raise

    run_ids = {d.data["run_id"] for d in receiver.deliveries}
    assert len(run_ids) == 1, "one push, one bound workflow: one run"
    run_id = run_ids.pop()

    # The run's order is its order on workflow-events (one partition per run id) ...
    records = await read_topic(settings.kafka_bootstrap_servers, topics.workflow_events)
    on_topic = [
        decode_any(list(r.headers.items()), r.value).data
        for r in records
        if r.key == run_id.encode()
    ]
    assert [(e.ce_type, _detail(e.model_dump(by_alias=True))) for e in on_topic] == EXPECTED

    # ... and the subscriber received each of those events, verified and signed.
    delivered = receiver.for_run(run_id)
    unique = {d.webhook_id: d for d in delivered}
    assert sorted((d.type, str(_detail(d.data))) for d in unique.values()) == sorted(
        (t, str(x)) for t, x in EXPECTED
    )
    assert all(d.data["workflow_id"] == "wf-demo" for d in delivered)
    assert receiver.rejected == 0, "every delivery verified with standardwebhooks"
