"""The hot path's shortcuts say exactly what the slow, obvious code says (no broker).

The inbound record spliced around the raw body decodes to the same event that
``shared.cloudevents.encode`` of a ``WebhookReceived`` would; the dedupe ids are
the ones already on the topic; the routes hand the pipeline the provider and webhook id
of each webhook path; the ASGI body reader keeps the size cap.
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.ingress import create_ingress_app
from services.ingress._body import (
    ParsedBody,
    parse_body,
    read_asgi_body,
)
from services.ingress._events import DEDUPE_NAMESPACE, dedupe_id
from services.ingress._record import received_record
from shared.cloudevents import decode, encode
from shared.errors import BodyTooLarge, ClientDisconnected, MalformedRequest
from shared.messages import WebhookReceived
from shared.settings import Settings
from testkit import TEST_SECRET_KEY

FORM = "application/x-www-form-urlencoded"

BODIES: list[tuple[str, str | None, bytes]] = [
    ("github", "application/json", b'{"action": "opened", "number": 1}'),
    # Whitespace, escapes, non-ASCII, nesting, a duplicate key: spliced as sent.
    (
        "github",
        "application/json",
        b' {\n "a" : "caf\\u00e9 \xe2\x98\x83 \\"q\\"",\t"n": [1, 2.5e3, -0, null, true],'
        b' "a": "last wins", "deep": {"x": {"y": [{}]}} }\n',
    ),
    ("generic", "application/json", b"[1, 2, 3]"),
    ("generic", "application/cloudevents+json", b'"just a string"'),
    ("github", FORM, b"payload=%7B%22action%22%3A%22closed%22%2C%22n%22%3A%22%C3%A9%22%7D"),
    ("slack", FORM, b"command=%2Fdeploy&text=now&tag=a&tag=b"),
    ("generic", "text/plain", "plain text é".encode()),
    ("generic", "application/octet-stream", bytes(range(256))),
]


def _both_ways(provider: str, content_type: str | None, body: bytes) -> tuple[Any, Any]:
    parsed = parse_body(provider, content_type, body)
    when = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    fields: dict[str, Any] = {
        "webhook_id": "wh-1",
        "provider": provider,
        "event_type": "push",
        "provider_event_id": "d-1",
        "received_at": when,
        "source_ip": "2001:db8::1",
        "content_type": content_type or "application/octet-stream",
        "headers": {"x-github-event": "push", "user-agent": "GitHub-Hookshot/1"},
        "payload_encoding": parsed.encoding,
        "payload": parsed.payload,
    }
    ce_id = dedupe_id("wh-1", "d-1")
    fast = received_record(**fields, payload_json=parsed.json_text, ce_id=ce_id)
    slow = encode(
        WebhookReceived.model_validate(fields),
        key="wh-1",
        source="/webhooks/wh-1",
        event_id=ce_id,
        time=when,
    )
    return fast, slow


@pytest.mark.parametrize(("provider", "content_type", "body"), BODIES)
def test_spliced_record_decodes_to_the_event_encode_would_write(
    provider: str, content_type: str | None, body: bytes
) -> None:
    fast, slow = _both_ways(provider, content_type, body)
    assert fast.key == slow.key
    assert dict(fast.headers) == dict(slow.headers)
    fast_event = decode(fast.headers, fast.value, WebhookReceived)
    slow_event = decode(slow.headers, slow.value, WebhookReceived)
    assert fast_event == slow_event
    assert fast_event.data.model_dump() == slow_event.data.model_dump()


def test_json_body_is_spliced_byte_for_byte() -> None:
    body = b'{ "action" :"opened",  "x": 1 }'
    fast, _ = _both_ways("github", "application/json", body)
    assert fast.value is not None
    assert fast.value.endswith(b',"payload":' + body + b"}")


def test_payload_without_json_text_is_dumped() -> None:
    parsed = parse_body("generic", "application/octet-stream", b"\xff\x00")
    assert parsed.json_text is None
    assert parsed.payload == base64.b64encode(b"\xff\x00").decode()


def test_json_text_does_not_change_parsed_body_equality() -> None:
    assert parse_body("github", "application/json", b'{"a": 1}') == ParsedBody("json", {"a": 1})


@pytest.mark.parametrize(
    ("webhook_id", "event_id", "ce_id"),
    [
        ("gh-main", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "8deedac4-23f3-5a38-9fff-cf00b11f4d4e"),
        ("wh-\u00fc", "\u2603", "7894d16e-fd38-52e2-b5d3-9e02bce07aaf"),
    ],
)
def test_dedupe_ids_stay_what_they_were(webhook_id: str, event_id: str, ce_id: str) -> None:
    # Ids already on the inbound topic: a provider's redelivery must get the same one,
    # whatever computes it, or the dispatcher would start its workflows a second time.
    assert dedupe_id(webhook_id, event_id) == ce_id


def test_dedupe_ids_are_the_uuid5_of_the_webhook_and_event_id() -> None:
    rng = random.Random(3)
    for _ in range(500):
        webhook_id = "".join(rng.choice("ab-\u00fc\n7") for _ in range(rng.randint(1, 12)))
        event_id = "".join(rng.choice("xy:\u2603 0") for _ in range(rng.randint(1, 40)))
        expected = uuid.uuid5(DEDUPE_NAMESPACE, f"{webhook_id}\n{event_id}")
        assert dedupe_id(webhook_id, event_id) == str(expected)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/webhooks/abc", ("generic", "abc")),
        ("/webhooks/abc/github", ("github", "abc")),
        ("/webhooks/abc/gitlab", ("gitlab", "abc")),
        ("/webhooks/abc/slack", ("slack", "abc")),
        ("/webhooks/abc/bitbucket", None),
        ("/webhooks/abc/github/extra", None),
        ("/webhooks/", None),
        ("/webhooks//github", None),
        ("/webhooks/abc/", None),
        ("/webhooks", None),
        ("/healthz", None),
    ],
)
async def test_the_routes_hand_the_pipeline_its_provider_and_webhook_id(
    path: str, target: tuple[str, str] | None
) -> None:
    app = create_ingress_app(Settings(secret_key=TEST_SECRET_KEY))
    reached: list[tuple[str, str]] = []

    async def pipeline(scope: Any, receive: Any, send: Any, provider: str, webhook_id: str) -> None:
        reached.append((provider, webhook_id))
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app.state.ingress.handle = pipeline
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress.test") as http:
        answer = await http.post(path, content=b"{}")
    assert reached == ([] if target is None else [target])
    assert (answer.status_code == 202) == (target is not None)


def _receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


async def test_asgi_body_reader_joins_chunks_and_keeps_the_cap() -> None:
    parts = (
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    )
    assert await read_asgi_body(_receiver(*parts), declared_length=None, limit=4) == b"abcd"
    with pytest.raises(BodyTooLarge):
        await read_asgi_body(_receiver(*parts), declared_length=None, limit=3)
    with pytest.raises(BodyTooLarge):
        await read_asgi_body(_receiver(), declared_length="5", limit=4)
    with pytest.raises(MalformedRequest):
        await read_asgi_body(_receiver(), declared_length="five", limit=4)


async def test_asgi_body_reader_stops_on_disconnect() -> None:
    receive = _receiver(
        {"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(ClientDisconnected):
        await read_asgi_body(receive, declared_length=None, limit=10)
