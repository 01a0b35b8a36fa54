"""The inbound record names the scheme that verified the request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from services.ingress._record import received_record, verification_used
from testkit.config import webhook

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def test_the_scheme_is_told_from_the_provider_and_the_credentials_sent():
    signed = webhook("gh", provider="github", secrets=["s3cret-value"])
    assert verification_used(signed, "github", {"x-hub-signature-256": "sha256=.."}, NOW) == (
        "github-sha256"
    )
    assert verification_used(signed, "github", {"x-hub-signature": "sha1=.."}, NOW) == "github-sha1"
    gitlab = webhook("gl", provider="gitlab", secrets=["s3cret-value"])
    assert verification_used(gitlab, "gitlab", {"x-gitlab-token": "t"}, NOW) == "gitlab-token"
    assert verification_used(gitlab, "gitlab", {"webhook-signature": "v1,x"}, NOW) == (
        "gitlab-signature"
    )
    slack = webhook("sl", provider="slack", secrets=["s3cret-value"])
    assert verification_used(slack, "slack", {}, NOW) == "slack-v0"
    generic = webhook("g", secrets=["s3cret-value"])
    assert verification_used(generic, "generic", {}, NOW) == "standard-webhooks"
    open_hook = webhook("o", allow_unsigned=True)
    assert verification_used(open_hook, "generic", {}, NOW) == "unsigned"
    # A secret rotated out no longer verifies anything; unsigned posts are what passed.
    expired = open_hook.model_copy(
        update={
            "secrets": [signed.secrets[0].model_copy(update={"expires_at": NOW - timedelta(1)})]
        }
    )
    assert verification_used(expired, "generic", {}, NOW) == "unsigned"


def test_the_record_carries_it():
    record = received_record(
        webhook_id="gh",
        provider="github",
        event_type="push",
        provider_event_id="d-1",
        received_at=NOW,
        source_ip="192.30.252.1",
        content_type="application/json",
        headers={},
        payload_encoding="json",
        payload={"a": 1},
        payload_json=b'{"a":1}',
        ce_id="x",
        verification="github-sha256",
    )
    assert record.value is not None
    assert orjson.loads(record.value)["verification"] == "github-sha256"
