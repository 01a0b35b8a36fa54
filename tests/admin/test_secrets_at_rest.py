"""Secrets stay secret: not in the audit trail, headers sealed at rest and write-only."""

from __future__ import annotations

import uuid

import pytest

from services.admin.headers import MASK
from shared.crypto import generate_subscription_secret
from shared.entities import Subscription
from testkit.kafka import read_topic

from .conftest import Admin

pytestmark = pytest.mark.kafka


def raw_bytes(records) -> bytes:  # type: ignore[no-untyped-def]
    out = b""
    for r in records:
        out += (r.key or b"") + (r.value or b"") + b"".join(r.headers.values())
    return out


async def test_the_audit_topic_holds_no_secret_after_creating_rotating_and_deleting_them(
    admin: Admin,
):
    client = admin.client
    given, rotated = generate_subscription_secret(), generate_subscription_secret()
    header = f"Bearer header-{uuid.uuid4().hex}"
    secrets: list[str] = [given, rotated, header]

    created = await client.post(
        "/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/h", "secret": given, "headers": {"Authorization": header}},
    )
    assert created.status_code == 201
    sub_id = created.json()["id"]
    r = await client.post(f"/v1/subscriptions/{sub_id}/rotate-secret", json={"secret": rotated})
    assert r.status_code == 200
    r = await client.post(f"/v1/subscriptions/{sub_id}/rotate-secret")
    secrets.append(r.json()["secret"])  # generated: shown once, in this answer
    hook = await client.post("/v1/webhooks", json={"provider": "generic"})
    assert hook.status_code == 201
    secrets.append(hook.json()["secret"])
    hook_id = hook.json()["id"]
    r = await client.post(f"/v1/webhooks/{hook_id}/rotate-secret", json={"secret": "w" * 40})
    secrets.append("w" * 40)
    assert r.status_code == 200
    assert (await client.delete(f"/v1/subscriptions/{sub_id}")).status_code == 204
    assert (await client.delete(f"/v1/webhooks/{hook_id}")).status_code == 204

    audit = await read_topic(admin.settings.kafka_bootstrap_servers, admin.topics.audit)
    assert len(audit) >= 7  # every one of those writes, audited before it was answered
    raw = raw_bytes(audit)
    for secret in secrets:
        assert secret.encode() not in raw
        assert secret.split("_", 1)[-1].encode() not in raw  # nor its base64 body
    config = raw_bytes(
        await read_topic(admin.settings.kafka_bootstrap_servers, admin.topics.config)
    )
    assert header.encode() not in config  # the header is sealed at rest, as secrets are
    assert given.encode() not in config


async def test_headers_are_write_only_and_the_mask_keeps_a_stored_value(admin: Admin):
    client = admin.client
    body = {
        "url": "http://127.0.0.1:9/h",
        "headers": {"Authorization": "Bearer first", "X-Team": "blue"},
    }
    created = await client.post("/v1/subscriptions", json=body)
    sub_id = created.json()["id"]
    assert created.json()["headers"] == {"Authorization": MASK, "X-Team": MASK}
    read = (await client.get(f"/v1/subscriptions/{sub_id}")).json()
    assert read["headers"] == {"Authorization": MASK, "X-Team": MASK}

    def stored() -> dict[str, str]:
        sub = admin.ctx.view.get(Subscription, sub_id)
        assert sub is not None
        return admin.ctx.view.headers(sub)

    assert stored() == {"Authorization": "Bearer first", "X-Team": "blue"}
    # The same plaintext again changes nothing (hookline apply stays idempotent).
    again = await client.put(f"/v1/subscriptions/{sub_id}", json=body)
    assert again.headers["hookline-result"] == "unchanged"
    # What a read returned can be sent back: the mask keeps the stored value.
    read["headers"]["X-Team"] = "green"
    put = {k: read[k] for k in ("url", "headers", "events", "enabled")}
    changed = await client.put(f"/v1/subscriptions/{sub_id}", json=put)
    assert changed.headers["hookline-changed-fields"] == "headers"
    assert stored() == {"Authorization": "Bearer first", "X-Team": "green"}
    # A patch that leaves the headers out keeps them.
    await client.patch(f"/v1/subscriptions/{sub_id}", json={"description": "d"})
    assert stored() == {"Authorization": "Bearer first", "X-Team": "green"}
    # A name left out of a write is removed; a mask with no stored value is refused.
    await client.patch(f"/v1/subscriptions/{sub_id}", json={"headers": {"X-Team": MASK}})
    assert stored() == {"X-Team": "green"}
    refused = await client.patch(f"/v1/subscriptions/{sub_id}", json={"headers": {"X-New": MASK}})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "headers", "X-New"]
