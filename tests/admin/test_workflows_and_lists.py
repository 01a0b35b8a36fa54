"""Workflows' whole life, list filters and cursor pagination, and bearer-token auth."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.admin import create_admin_app
from shared.errors import ConfigurationError
from shared.settings import Settings
from shared.topics import Topics

from .conftest import Admin, running_admin

pytestmark = pytest.mark.kafka


async def test_a_workflow_from_create_to_delete(admin: Admin):
    client = admin.client
    nodes = [
        {"id": "build", "kind": "log"},
        {"id": "wait", "kind": "sleep", "config": {"seconds": 1}},
    ]
    made = await client.post("/v1/workflows", json={"id": "wf-ci", "name": "CI", "nodes": nodes})
    assert made.status_code == 201, made.text
    assert [n["id"] for n in made.json()["nodes"]] == ["build", "wait"], "nodes keep their order"
    assert "secret" not in made.json() and "secrets" not in made.json()
    assert admin.ctx.view.workflow("wf-ci") is not None

    dup = await client.put(
        "/v1/workflows/wf-ci",
        json={"nodes": [{"id": "a", "kind": "log"}, {"id": "a", "kind": "log"}]},
    )
    assert dup.status_code == 422 and dup.json()["errors"][0]["loc"] == ["body", "nodes"]
    kind = await client.put(
        "/v1/workflows/wf-ci", json={"nodes": [{"id": "a", "kind": "teleport"}]}
    )
    assert kind.status_code == 422
    other = await client.put("/v1/workflows/wf-ci", json={"id": "wf-other", "nodes": []})
    assert other.status_code == 422 and other.json()["errors"][0]["loc"] == ["body", "id"]

    renamed = await client.patch("/v1/workflows/wf-ci", json={"name": "Continuous integration"})
    assert renamed.status_code == 200 and renamed.json()["nodes"] == made.json()["nodes"]
    assert renamed.headers["etag"] == '"2"'
    reset = await client.patch(
        "/v1/workflows/wf-ci",
        content=b'{"description": "x", "name": null}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert reset.json()["name"] is None and reset.json()["description"] == "x"

    assert (await client.delete("/v1/workflows/wf-ci")).status_code == 204
    assert (await client.get("/v1/workflows/wf-ci")).status_code == 404
    assert (await client.patch("/v1/workflows/wf-ci", json={})).status_code == 404
    assert (
        await client.put("/v1/workflows/wf-ci", json={}, headers={"If-Match": '"3"'})
    ).status_code == 412, "If-Match on something that no longer exists"


async def test_lists_filter_and_page_with_a_cursor(admin: Admin):
    client = admin.client
    for i in range(7):
        provider = "github" if i % 2 else "gitlab"
        answer = await client.post(
            "/v1/webhooks",
            json={
                "id": f"wh-{i}",
                "provider": provider,
                "enabled": i != 3,
                "bindings": [{"workflow_id": "wf-a" if i < 4 else "wf-b"}],
            },
        )
        assert answer.status_code == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/webhooks", params=params)).json()
        seen += [w["id"] for w in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"wh-{i}" for i in range(7)] and pages == 3
    assert all("secret" not in w for w in page["items"])

    async def ids(**params: str) -> list[str]:
        answer = await client.get("/v1/webhooks", params=params)
        assert answer.status_code == 200, answer.text
        return [w["id"] for w in answer.json()["items"]]

    assert await ids(provider="github") == ["wh-1", "wh-3", "wh-5"]
    assert await ids(enabled="false") == ["wh-3"]
    assert await ids(workflow_id="wf-b", provider="gitlab") == ["wh-4", "wh-6"]

    bad = await client.get("/v1/webhooks", params={"limit": 0, "cursor": "!!"})
    assert bad.status_code == 422
    assert (await client.get("/v1/webhooks", params={"cursor": "bm9wZQ"})).status_code == 422

    for i, events in enumerate([["workflow.completed"], ["workflow.*"], ["*"]]):
        await client.post(
            "/v1/subscriptions",
            json={
                "id": f"s{i}",
                "url": "https://r.example/",
                "events": events,
                "workflow_ids": ["wf-a"] if i else None,
            },
        )
    subs = await client.get("/v1/subscriptions", params={"event_type": "workflow.failed"})
    assert [s["id"] for s in subs.json()["items"]] == ["s1", "s2"]
    subs = await client.get("/v1/subscriptions", params={"workflow_id": "wf-z"})
    assert [s["id"] for s in subs.json()["items"]] == ["s0"]


async def test_every_route_but_health_needs_a_token(
    admin: Admin, settings: Settings, topics: Topics, tmp_path: Path
):
    client = admin.client
    for method, path in [
        ("GET", "/v1/webhooks"),
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/workflows/x"),
        ("DELETE", "/v1/webhooks/x"),
        ("GET", "/v1/deliveries"),
        ("POST", "/v1/events"),
        ("GET", "/openapi.json"),
        ("GET", "/nowhere"),
    ]:
        for headers in (
            {"Authorization": ""},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic dGVzdA=="},
        ):
            answer = await client.request(method, path, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["www-authenticate"].startswith("Bearer")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path, headers={"Authorization": ""})).status_code == 200, path
    ready = await client.get("/readyz")
    assert ready.json()["checks"] == {
        "kafka": True,
        "config_view": True,
        "broker": True,
        "operations_view": True,
    }
    metrics = await client.get("/metrics")
    assert "hookline_admin_requests_total" in metrics.text

    # Two tokens, as during a rotation: both work.
    rotating = settings.model_copy(
        update={
            "admin_token": [
                *settings.admin_token,
                *Settings(admin_token="next-token-abcdef").admin_token,
            ],
            # A second replica beside the first: a view file of its own.
            "admin_view_path": tmp_path / "second-view.sqlite3",
        }
    )
    async with running_admin(rotating, topics) as second:
        for token in ("next-token-abcdef", settings.admin_token[0].get_secret_value()):
            answer = await second.client.get(
                "/v1/webhooks", headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 200


def test_refuses_to_start_without_a_secret_key_or_tokens(settings: Settings):
    with pytest.raises(ConfigurationError, match="HOOKLINE_SECRET_KEY"):
        create_admin_app(settings.model_copy(update={"secret_key": None}))
    with pytest.raises(ConfigurationError, match="HOOKLINE_ADMIN_TOKEN"):
        create_admin_app(settings.model_copy(update={"admin_token": []}))


async def test_malformed_requests_get_clear_4xx(admin: Admin):
    client = admin.client
    assert (await client.post("/v1/webhooks", content=b"{not json")).status_code == 400
    assert (await client.post("/v1/webhooks", content=b"")).status_code == 422
    assert (
        await client.post(
            "/v1/webhooks", content=b"<x/>", headers={"content-type": "application/xml"}
        )
    ).status_code == 415
    assert (await client.post("/v1/webhooks", json=[1, 2])).status_code == 422
    assert (
        await client.post("/v1/webhooks", content=b"{" + b" " * (2 << 20) + b"}")
    ).status_code == 413
    wrong = await client.request("PATCH", "/v1/webhooks")
    assert wrong.status_code == 405 and set(wrong.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert (await client.get("/v1/webhooks/bad%20id")).status_code == 404
    assert (await client.put("/v1/webhooks/bad%20id", json={})).status_code == 422
    assert (await client.put("/v1/webhooks/trailing%0A", json={})).status_code == 422
