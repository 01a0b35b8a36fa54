"""Body reading and parsing, event types and event ids (pure logic, no broker)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

import orjson
import pytest

from services.ingress._body import ParsedBody, parse_body, read_capped
from services.ingress._events import (
    dedupe_id,
    event_type,
    normalize_gitlab_event,
    provider_event_id,
)
from shared.errors import BodyTooLarge, MalformedRequest, UnsupportedMediaType

FORM = "application/x-www-form-urlencoded"


async def chunks(*parts: bytes, seen: list[bytes] | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        if seen is not None:
            seen.append(part)
        yield part


async def test_body_under_the_cap_is_read_whole():
    assert await read_capped(chunks(b"ab", b"cd"), declared_length="4", limit=4) == b"abcd"


async def test_declared_length_over_the_cap_is_refused_before_reading():
    seen: list[bytes] = []
    with pytest.raises(BodyTooLarge):
        await read_capped(chunks(b"x" * 10, seen=seen), declared_length="11", limit=10)
    assert seen == []


async def test_chunked_body_is_refused_as_soon_as_it_passes_the_cap():
    seen: list[bytes] = []
    with pytest.raises(BodyTooLarge):
        await read_capped(
            chunks(b"x" * 6, b"x" * 6, b"never read", seen=seen), declared_length=None, limit=10
        )
    assert len(seen) == 2, "reading stopped at the chunk that passed the cap"


async def test_content_length_that_is_not_a_number_is_malformed():
    with pytest.raises(MalformedRequest):
        await read_capped(chunks(b""), declared_length="ten", limit=10)


def test_json_bodies_parse_and_invalid_json_is_malformed():
    assert parse_body("github", "application/json; charset=utf-8", b'{"a": 1}') == ParsedBody(
        "json", {"a": 1}
    )
    with pytest.raises(MalformedRequest):
        parse_body("github", "application/json", b'{"a": ')


def test_github_form_carries_the_json_in_its_payload_field():
    body = urlencode({"payload": '{"action": "opened"}'}).encode()
    parsed = parse_body("github", FORM, body)
    assert parsed.encoding == "json" and parsed.payload == {"action": "opened"}
    with pytest.raises(MalformedRequest):
        parse_body("github", FORM, b"other=1")


def test_slack_slash_command_keeps_its_form_fields():
    parsed = parse_body("slack", FORM, b"command=%2Fhello&text=Hi+there&empty=")
    assert parsed.encoding == "form"
    assert parsed.payload == {"command": "/hello", "text": "Hi there", "empty": ""}


def test_repeated_form_fields_become_lists():
    parsed = parse_body("generic", FORM, b"tag=a&tag=b&one=1")
    assert parsed.payload == {"tag": ["a", "b"], "one": "1"}


def test_slack_interactive_form_payload_is_json():
    body = "payload=" + quote('{"type": "block_actions"}')
    parsed = parse_body("slack", FORM, body.encode())
    assert parsed.encoding == "json" and parsed.payload == {"type": "block_actions"}


@pytest.mark.parametrize(
    ("provider", "content_type"),
    [
        ("github", "text/plain"),
        ("github", "application/xml"),
        ("gitlab", FORM),
        ("slack", "multipart/form-data; boundary=x"),
        ("github", None),
    ],
)
def test_provider_routes_refuse_content_types_the_provider_never_sends(provider, content_type):
    with pytest.raises(UnsupportedMediaType):
        parse_body(provider, content_type, b"x")


def test_generic_route_keeps_other_bodies_raw():
    assert parse_body("generic", "application/xml", b"<a/>") == ParsedBody("text", "<a/>")
    assert parse_body("generic", None, b"plain") == ParsedBody("text", "plain")
    binary = bytes(range(250, 256))
    assert parse_body("generic", "application/octet-stream", binary) == ParsedBody(
        "base64", base64.b64encode(binary).decode()
    )


def test_generic_json_with_a_vendor_suffix_parses():
    assert parse_body("generic", "application/cloudevents+json", b"[1]").payload == [1]


# -- event types ---------------------------------------------------------------------------


def json_body(payload: object) -> ParsedBody:
    return ParsedBody("json", payload)


def test_github_event_type_adds_the_action():
    headers = {"x-github-event": "pull_request"}
    assert event_type("github", headers, json_body({"action": "opened"})) == "pull_request.opened"
    assert event_type("github", {"x-github-event": "push"}, json_body({"ref": "x"})) == "push"
    with pytest.raises(MalformedRequest):
        event_type("github", {}, json_body({}))


@pytest.mark.parametrize(
    ("header", "payload", "expected"),
    [
        ("Push Hook", {}, "push"),
        ("Tag Push Hook", {}, "tag_push"),
        ("Merge Request Hook", {}, "merge_request"),
        ("Resource Access Token Hook", {}, "resource_access_token"),
        ("System Hook", {"event_name": "user_create"}, "system.user_create"),
        ("System Hook", {}, "system"),
    ],
)
def test_gitlab_event_names_are_normalized(header, payload, expected):
    assert normalize_gitlab_event(header, payload) == expected


@pytest.mark.parametrize(
    ("parsed", "expected"),
    [
        (json_body({"type": "url_verification", "challenge": "c"}), "url_verification"),
        (
            json_body({"type": "event_callback", "event": {"type": "app_mention"}}),
            "event_callback.app_mention",
        ),
        (ParsedBody("json", {"type": "block_actions"}, form={"payload": "…"}), "block_actions"),
        (ParsedBody("form", {"command": "/x"}, form={"command": "/x"}), "slash_command"),
    ],
)
def test_slack_event_types(parsed, expected):
    assert event_type("slack", {}, parsed) == expected


def test_generic_event_type_from_header_then_body_then_default():
    assert event_type("generic", {"x-webhook-event": "order.paid"}, json_body({})) == "order.paid"
    assert event_type("generic", {}, json_body({"type": "invoice.sent"})) == "invoice.sent"
    assert event_type("generic", {}, ParsedBody("text", "hello")) == "webhook"


def test_event_types_that_are_not_printable_are_malformed():
    with pytest.raises(MalformedRequest):
        event_type("generic", {"x-webhook-event": "a\x00b"}, json_body({}))
    with pytest.raises(MalformedRequest):
        event_type("generic", {"x-webhook-event": "x" * 201}, json_body({}))


# -- event ids -----------------------------------------------------------------------------


def test_event_ids_come_from_each_providers_delivery_id():
    empty = json_body({})
    assert provider_event_id("github", {"x-github-delivery": "g-1"}, empty) == "g-1"
    assert (
        provider_event_id("gitlab", {"idempotency-key": "k-1", "x-gitlab-event-uuid": "u-1"}, empty)
        == "k-1"
    )
    assert provider_event_id("gitlab", {"x-gitlab-event-uuid": "u-1"}, empty) == "u-1"
    assert provider_event_id("slack", {}, json_body({"event_id": "Ev1"})) == "Ev1"
    assert provider_event_id("generic", {"webhook-id": "msg_1"}, empty) == "msg_1"
    assert provider_event_id("generic", {}, empty) is None


def test_dedupe_id_is_stable_per_webhook_and_differs_across_webhooks():
    assert dedupe_id("hook-a", "g-1") == dedupe_id("hook-a", "g-1")
    assert dedupe_id("hook-a", "g-1") != dedupe_id("hook-b", "g-1")
    assert orjson.dumps(dedupe_id("a", "b"))  # a plain string
