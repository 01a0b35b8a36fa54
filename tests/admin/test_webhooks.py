"""Inbound webhooks through the admin API and the real broker: the whole life of one."""

from __future__ import annotations

import pytest

from shared.cloudevents import decode
from shared.entities import Webhook
from testkit.kafka import read_topic

from .conftest import Admin

pytestmark = pytest.mark.kafka

GITHUB_SECRET = "gh-webhook-secret-0123456789abcdef"


async def test_a_webhook_from_create_to_delete(admin: Admin):
    client, view = admin.client, admin.ctx.view

    created = await client.post(
        "/v1/webhooks",
        json={
            "id": "gh-main",
            "provider": "github",
            "secret": GITHUB_SECRET,
            "allowed_cidrs": ["192.30.252.0/22"],
            "bindings": [{"workflow_id": "wf-ci", "events": ["push", "pull_request.*"]}],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"] == GITHUB_SECRET, "the whole secret is shown once, on create"
    assert (
        created.headers["etag"] == '"1"' and created.headers["location"] == "/v1/webhooks/gh-main"
    )
    assert body["secrets"][0]["hint"].endswith("cdef") and body["secrets"][0]["active"]
    # Read your writes: the view holds it the moment the answer arrives.
    stored = view.webhook("gh-main")
    assert stored is not None and stored.version == 1
    assert view.secrets(stored) == [GITHUB_SECRET]

    got = await client.get("/v1/webhooks/gh-main")
    assert got.status_code == 200 and "secret" not in got.json()
    assert GITHUB_SECRET not in got.text
    assert got.json()["bindings"] == [
        {"workflow_id": "wf-ci", "events": ["push", "pull_request.*"], "filter": None}
    ]

    again = await client.post("/v1/webhooks", json={"id": "gh-main", "provider": "github"})
    assert again.status_code == 409

    patched = await client.patch(
        "/v1/webhooks/gh-main", json={"enabled": False}, headers={"If-Match": '"1"'}
    )
    assert patched.status_code == 200, patched.text
    assert patched.headers["etag"] == '"2"' and patched.json()["enabled"] is False
    assert patched.headers["hookline-changed-fields"] == "enabled"
    assert patched.json()["allowed_cidrs"] == ["192.30.252.0/22"], "a patch keeps the rest"

    stale = await client.patch(
        "/v1/webhooks/gh-main", json={"enabled": True}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 412 and stale.headers["etag"] == '"2"'

    replaced = await client.put(
        "/v1/webhooks/gh-main",
        json={"provider": "github", "bindings": [{"workflow_id": "wf-ci"}]},
        headers={"If-Match": '"2"'},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["allowed_cidrs"] == [] and replaced.json()["enabled"] is True
    assert "secret" not in replaced.json(), "a PUT without a secret keeps the secret"
    assert view.secrets(view.webhook("gh-main")) == [GITHUB_SECRET]  # type: ignore[arg-type]

    same = await client.put(
        "/v1/webhooks/gh-main",
        json={
            "provider": "github",
            "secret": GITHUB_SECRET,
            "bindings": [{"workflow_id": "wf-ci"}],
        },
    )
    assert same.status_code == 200 and same.headers["hookline-result"] == "unchanged"
    assert same.headers["etag"] == '"3"'

    rotated = await client.post("/v1/webhooks/gh-main/rotate-secret", json={})
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret and new_secret != GITHUB_SECRET
    assert view.secrets(view.webhook("gh-main")) == [new_secret, GITHUB_SECRET]  # type: ignore[arg-type]
    old = [s for s in rotated.json()["secrets"] if s["expires_at"] is not None]
    assert len(old) == 1 and old[0]["active"]

    listed = await client.get("/v1/webhooks")
    assert [w["id"] for w in listed.json()["items"]] == ["gh-main"]

    deleted = await client.delete("/v1/webhooks/gh-main", headers={"If-Match": '"4"'})
    assert deleted.status_code == 204
    assert view.webhook("gh-main") is None
    assert (await client.get("/v1/webhooks/gh-main")).status_code == 404
    assert (await client.delete("/v1/webhooks/gh-main")).status_code == 404

    # The topic holds the history as events: four states and a tombstone, keyed by entity.
    records = await read_topic(admin.settings.kafka_bootstrap_servers, admin.topics.config)
    assert [r.key for r in records] == [b"webhook/gh-main"] * 5
    assert records[-1].value is None
    versions = [
        decode(list(r.headers.items()), r.value, Webhook).data.version for r in records[:-1]
    ]
    assert versions == [1, 2, 3, 4]


async def test_a_generated_secret_and_validation(admin: Admin):
    client = admin.client
    made = await client.post("/v1/webhooks", json={"provider": "generic"})
    assert made.status_code == 201
    assert made.json()["id"].startswith("wh_") and made.json()["secret"].startswith("whsec_")

    slack = await client.post("/v1/webhooks", json={"provider": "slack"})
    assert slack.status_code == 422
    assert slack.json()["errors"][0]["loc"] == ["body", "secret"]

    unsigned = await client.post("/v1/webhooks", json={"allow_unsigned": True})
    assert unsigned.status_code == 201 and "secret" not in unsigned.json()

    bad = await client.post(
        "/v1/webhooks",
        json={
            "provider": "bitbucket",
            "allowed_cidrs": ["not-a-network"],
            "bindings": [{"workflow_id": "wf", "filter": "a[?"}],
            "colour": "blue",
        },
    )
    assert bad.status_code == 422
    locs = {tuple(d["loc"]) for d in bad.json()["errors"]}
    assert {
        ("body", "provider"),
        ("body", "allowed_cidrs"),
        ("body", "bindings", 0, "filter"),
        ("body", "colour"),
    } <= locs
