"""Outbound subscriptions: their whole life, secrets, rotation, and the URL rules."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from shared.settings import Settings
from shared.topics import Topics

from .conftest import Admin, running_admin

pytestmark = pytest.mark.kafka


async def test_a_subscription_from_create_to_delete(admin: Admin):
    client, view = admin.client, admin.ctx.view
    created = await client.post(
        "/v1/subscriptions",
        json={
            "url": "https://receiver.example/hooks",
            "events": ["workflow.completed", "workflow.failed"],
            "workflow_ids": ["wf-ci"],
            "headers": {"X-Team": "platform"},
            "description": "CI results",
        },
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    sub_id, secret = sub["id"], sub["secret"]
    assert sub_id.startswith("sub_")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert sub["secrets"][0]["hint"] == "whsec_…" + secret[-4:]
    # The secret works with an independent Standard Webhooks implementation.
    signer = StandardWebhook(secret)
    stamp = datetime.now().astimezone()
    signature = signer.sign("msg_1", stamp, '{"a":1}')
    assert signer.verify(
        '{"a":1}',
        {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": signature,
        },
    ) == {"a": 1}

    stored = view.subscription(sub_id)
    assert stored is not None and view.secrets(stored) == [secret]
    assert [s.id for s in view.subscriptions_for("workflow.completed", "wf-ci")] == [sub_id]
    assert view.subscriptions_for("workflow.started", "wf-ci") == []

    got = await client.get(f"/v1/subscriptions/{sub_id}")
    assert got.status_code == 200 and secret not in got.text and "secret" not in got.json()

    patched = await client.patch(
        f"/v1/subscriptions/{sub_id}",
        json={"events": ["*"], "workflow_ids": None},
        headers={"If-Match": got.headers["etag"]},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["events"] == ["*"] and patched.json()["workflow_ids"] is None
    assert sorted(patched.headers["hookline-changed-fields"].split(",")) == [
        "events",
        "workflow_ids",
    ]

    rotated = await client.post(
        f"/v1/subscriptions/{sub_id}/rotate-secret", headers={"If-Match": '"2"'}
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != secret
    current = view.subscription(sub_id)
    assert current is not None and view.secrets(current) == [new, secret], "both valid in grace"
    old = next(s for s in current.secrets if s.expires_at is not None)
    assert old.expires_at is not None
    grace = timedelta(seconds=admin.settings.secret_grace_period)
    assert abs(old.expires_at - (datetime.now(UTC) + grace)) < timedelta(minutes=1)
    assert view.secrets(current, now=old.expires_at + timedelta(seconds=1)) == [new]

    stale = await client.delete(f"/v1/subscriptions/{sub_id}", headers={"If-Match": '"2"'})
    assert stale.status_code == 412
    gone = await client.delete(f"/v1/subscriptions/{sub_id}", headers={"If-Match": '"3"'})
    assert gone.status_code == 204 and view.subscription(sub_id) is None


async def test_a_given_secret_and_put_creates(admin: Admin):
    client = admin.client
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    made = await client.put(
        "/v1/subscriptions/audit", json={"url": "https://audit.example/in", "secret": secret}
    )
    assert made.status_code == 201 and made.headers["hookline-result"] == "created"
    assert made.json()["secret"] == secret
    again = await client.put(
        "/v1/subscriptions/audit", json={"url": "https://audit.example/in", "secret": secret}
    )
    assert again.status_code == 200 and again.headers["hookline-result"] == "unchanged"
    dry = await client.put(
        "/v1/subscriptions/audit",
        params={"dry_run": "true"},
        json={"url": "https://audit.example/v2", "secret": secret},
    )
    assert dry.headers["hookline-result"] == "updated"
    assert dry.headers["hookline-changed-fields"] == "url"
    assert admin.ctx.view.subscription("audit").url == "https://audit.example/in"  # type: ignore[union-attr]
    weak = await client.put(
        "/v1/subscriptions/audit", json={"url": "https://audit.example/in", "secret": "whsec_abc"}
    )
    assert weak.status_code == 422


async def test_a_disabled_reason_stays_only_while_disabled(admin: Admin):
    from testkit.config import put_entities, subscription

    meta = await put_entities(
        admin.settings.kafka_bootstrap_servers,
        admin.topics.config,
        subscription(
            "gone",
            secrets=["whsec_" + base64.b64encode(b"g" * 32).decode()],
            url="https://gone.example/",
            enabled=False,
            disabled_reason="410 Gone",
        ),
    )
    await admin.ctx.view.wait_for(meta.partition, meta.offset)
    got = await admin.client.get("/v1/subscriptions/gone")
    assert got.json()["disabled_reason"] == "410 Gone"
    enabled = await admin.client.patch("/v1/subscriptions/gone", json={"enabled": True})
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None


REFUSED = [
    ("http://receiver.example/hooks", "https"),
    ("https://user:pass@receiver.example/hooks", "user info"),
    ("https://127.0.0.1/hooks", "private"),
    ("https://10.0.0.1/hooks", "private"),
    ("https://169.254.169.254/latest/meta-data", "private"),
    ("https://[::1]:8443/hooks", "private"),
    ("https://[fd00:ec2::254]/", "private"),
    ("https://[::ffff:192.168.1.1]/", "private"),
    ("https://2130706433/", "private"),
    ("https://0x7f.1/", "private"),
    ("https://localhost:8443/", "localhost"),
    ("ftp://receiver.example/", "https"),
    ("https:///path-only", "no host"),
]


async def test_http_and_private_urls_are_refused_at_write_time(settings: Settings, topics: Topics):
    strict = settings.model_copy(
        update={"allow_insecure_urls": False, "allow_private_destinations": False}
    )
    async with running_admin(strict, topics) as admin:
        for url, reason in REFUSED:
            answer = await admin.client.post("/v1/subscriptions", json={"url": url})
            assert answer.status_code == 422, (url, answer.text)
            detail = answer.json()["errors"][0]
            assert detail["loc"] == ["body", "url"] and reason in detail["msg"], url
        ok = await admin.client.post("/v1/subscriptions", json={"url": "https://93.184.215.14/x"})
        assert ok.status_code == 201
        named = await admin.client.post("/v1/subscriptions", json={"url": "https://hooks.example/"})
        assert named.status_code == 201, "names are resolved and checked at send time"


async def test_flags_allow_http_and_private_for_development(admin: Admin):
    answer = await admin.client.post(
        "/v1/subscriptions", json={"url": "http://127.0.0.1:9999/hooks"}
    )
    assert answer.status_code == 201


async def test_subscription_validation_names_the_fields(admin: Admin):
    answer = await admin.client.post(
        "/v1/subscriptions",
        json={
            "url": "https://ok.example/",
            "events": ["workflow.finished"],
            "headers": {"Content-Type": "text/plain", "X-Ok": "a\r\nb"},
            "rate_limit": {"per_second": 0},
        },
    )
    assert answer.status_code == 422
    locs = {tuple(d["loc"][:2]) for d in answer.json()["errors"]}
    assert {("body", "events"), ("body", "headers"), ("body", "rate_limit")} <= locs
