"""Bad input: generated requests never get a 5xx; poison on every topic lands in the dlq.

Two halves. Hypothesis throws random headers, bodies, content types, sizes and
signatures (some of them valid, so parsing runs after verification) at the
real ingress app. Then, with every service running, malformed records are
written to each topic a service consumes; each consumer must dead-letter them
and keep going, which a clean webhook afterwards proves end to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from shared.cloudevents import encode
from shared.kafka import create_producer
from shared.messages import DeliveryDue, RunRequested, WorkflowStarted, utcnow
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription, webhook, workflow
from testkit.kafka import read_topic, wait_until
from tests.e2e.stack import Receiver, Stack, running
from tests.ingress.helpers import github_headers, ingress_client, slack_headers, standard_headers
from tests.shared.test_messages_roundtrip import INBOUND, SAMPLES

SECRET = "bad-input-secret-0123456789"
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROUTES = [
    ("generic-signed", ""),
    ("generic-open", ""),
    ("gh", "/github"),
    ("gl", "/gitlab"),
    ("sl", "/slack"),
    ("missing", ""),
]
CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/xml",
    "application/octet-stream",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "",
]

header_names = st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=24
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5).map(
        lambda d: b"payload=" + json.dumps(d).encode()
    ),
    st.text(max_size=300).map(str.encode),
)
providers_headers = st.sampled_from(
    [
        "x-github-event",
        "x-github-delivery",
        "x-hub-signature-256",
        "x-hub-signature",
        "x-gitlab-event",
        "x-gitlab-token",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-forwarded-for",
        "content-length",
        "x-webhook-event",
    ]
)


def _sign(route: str, body: bytes) -> dict[str, str]:
    """Valid credentials for the route, so the request reaches the parsers."""
    if route == "gh":
        return github_headers(SECRET, body, "push", str(uuid.uuid4()))
    if route == "gl":
        return {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"}
    if route == "sl":
        return slack_headers(SECRET, body)
    if route == "generic-signed":
        return standard_headers("whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", body, "msg_x")
    return {}


# ``make test`` throws 600; ``make test-faults`` 10,000 (HOOKLINE_BAD_INPUT_EXAMPLES).
BAD_INPUT_EXAMPLES = int(os.environ.get("HOOKLINE_BAD_INPUT_EXAMPLES", "600"))


@pytest.mark.kafka
@pytest.mark.timeout(max(120, BAD_INPUT_EXAMPLES // 10))
async def test_generated_requests_never_get_a_server_error(
    settings: Settings, topics: Topics
) -> None:
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook(
            "generic-signed",
            provider="generic",
            secrets=["whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQ="],
        ),
        webhook("generic-open", provider="generic", allow_unsigned=True),
        webhook("gh", provider="github", secrets=[SECRET]),
        webhook("gl", provider="gitlab", secrets=[SECRET]),
        webhook("sl", provider="slack", secrets=[SECRET]),
    )
    seen: dict[int, int] = {}
    async with ingress_client(settings) as client:
        loop = asyncio.get_running_loop()

        @hsettings(
            max_examples=BAD_INPUT_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(
            route=st.sampled_from(ROUTES),
            content_type=st.sampled_from(CONTENT_TYPES) | header_values,
            body=bodies,
            extra=st.dictionaries(providers_headers | header_names, header_values, max_size=6),
            signed=st.booleans(),
        )
        def check(
            route: tuple[str, str],
            content_type: str,
            body: bytes,
            extra: dict[str, str],
            signed: bool,
        ) -> None:
            headers = {k: v for k, v in extra.items() if k.lower() != "content-length"}
            if content_type:
                headers["content-type"] = content_type
            if signed:
                headers.update(_sign(route[0], body))
            # The app and its producer live on the test's loop; hypothesis runs in a thread.
            response = asyncio.run_coroutine_threadsafe(
                client.post(f"/webhooks/{route[0]}{route[1]}", content=body, headers=headers),
                loop,
            ).result(timeout=30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (route, headers, body[:200], response.text)

        await asyncio.to_thread(check)
    print("statuses", sorted(seen.items()))
    assert set(seen) & {200, 202}, f"some generated requests were accepted: {seen}"
    assert set(seen) & {400, 401, 415}, f"some were refused: {seen}"


def _poison(valid_headers: list[tuple[str, bytes]], valid_value: bytes) -> list[tuple]:  # type: ignore[type-arg]
    """Malformed records: (key, value, headers, expected hookline_error_code)."""
    without_type = [(k, v) for k, v in valid_headers if k != "ce_type"]
    unknown_type = [(k, b"hookline.nonsense" if k == "ce_type" else v) for k, v in valid_headers]
    return [
        (b"poison-json", b"{not json", valid_headers, b"invalid_payload"),
        (b"poison-no-type", valid_value, without_type, b"missing_header"),
        (b"poison-unknown", valid_value, unknown_type, b"unknown_type"),
        (b"poison-schema", b'{"run_id": 5}', valid_headers, b"invalid_payload"),
        (b"poison-empty", None, valid_headers, b"invalid_payload"),
    ]


@pytest.mark.kafka
@pytest.mark.slow
async def test_poison_on_every_consumed_topic_is_dead_lettered_and_services_go_on(
    settings: Settings, topics: Topics, tmp_path: Path
) -> None:
    async with Receiver(RECEIVER_SECRET) as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            workflow("wf", nodes=[{"id": "only", "kind": "log"}]),
            webhook(
                "gh",
                provider="github",
                secrets=[SECRET],
                bindings=[{"workflow_id": "wf", "events": ["push"]}],
            ),
            subscription("sub", url=receiver.url, secrets=[RECEIVER_SECRET]),
        )
        stack = Stack(settings, tmp_path)
        for service in ("ingress", "dispatcher", "delivery"):
            stack.add(service)
        async with running(stack):
            samples = {
                topics.inbound: INBOUND,
                topics.workflow_commands: next(m for m in SAMPLES if isinstance(m, RunRequested)),
                topics.workflow_events: WorkflowStarted(
                    workflow_id="wf", run_id="r", occurred_at=utcnow()
                ),
                **{
                    t: next(m for m in SAMPLES if isinstance(m, DeliveryDue))
                    for t in topics.retry_tiers
                },
            }
            consumed = list(samples)
            poison = {}
            for topic, message in samples.items():
                valid = encode(message, key="k", source="/tests")
                poison[topic] = _poison(valid.headers, valid.value or b"")
            async with create_producer(settings.kafka_bootstrap_servers) as producer:
                for topic in consumed:
                    for key, value, headers, _ in poison[topic]:
                        await producer.send_and_wait(topic, value, key=key, headers=headers)
                # Config and the attempt log are read by every service: poison there is
                # skipped (and logged) by each reader, never fatal.
                await producer.send_and_wait(topics.config, b"{bad", key=b"webhook/poison")
                await producer.send_and_wait(topics.config, b"{}", key=b"no-kind")
                await producer.send_and_wait(topics.delivery_attempts, b"{bad", key=b"sub")

            expected = len(consumed) * 5
            dead = await read_topic(
                settings.kafka_bootstrap_servers, topics.dlq, min_count=expected, timeout=30
            )
            by_source: dict[str, list[bytes]] = {}
            for record in dead:
                source = record.headers.get("hookline_source_topic", b"").decode()
                by_source.setdefault(source, []).append(record.headers["hookline_error_code"])
            for topic in consumed:
                assert sorted(by_source.get(topic, [])) == sorted(p[3] for p in poison[topic]), (
                    f"poison on {topic} dead-lettered with its reason: {by_source.get(topic)}"
                )

            # Every consumer goes on: a clean webhook still runs its workflow and is delivered.
            body = orjson.dumps({"ref": "refs/heads/main"})
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{stack.url()}/webhooks/gh/github",
                    content=body,
                    headers={
                        "content-type": "application/json",
                        **github_headers(SECRET, body, "push", str(uuid.uuid4())),
                    },
                )
            assert response.status_code == 202
            await wait_until(
                lambda: any(
                    d.type == "status.changed" and d.data.get("to") == "succeeded"
                    for d in receiver.deliveries
                ),
                timeout=60,
                message="a clean run after the poison",
            )
            for replica in stack.replicas.values():
                assert replica.process.running, f"{replica.name} survived the poison"
