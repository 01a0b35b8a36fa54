"""Roles: each role allowed and refused on every route, and every refusal in the audit trail."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from services.admin.auth import ROLES, Role, allows, token_digest
from services.admin.routes import operations
from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_ADMIN_TOKEN
from testkit.kafka import read_topic, wait_until

from .conftest import running_admin

pytestmark = pytest.mark.kafka

# The route → action table, written out: a change to who may do what changes this test.
EXPECTED: dict[str, str] = {
    **{
        f"{verb}_{kind}": "read"
        for kind in ("webhook", "subscription", "workflow")
        for verb in ("get",)
    },
    **{f"list_{plural}": "read" for plural in ("webhooks", "subscriptions", "workflows")},
    **{
        f"{verb}_{kind}": "admin"
        for kind in ("webhook", "subscription", "workflow")
        for verb in ("create", "put", "patch", "delete")
    },
    "rotate_webhook_secret": "admin",
    "rotate_subscription_secret": "admin",
    "enable_webhook": "operate",
    "disable_webhook": "operate",
    "enable_subscription": "operate",
    "disable_subscription": "operate",
    "pause_subscription": "operate",
    "resume_subscription": "operate",
    "publish_event": "admin",
    "list_deliveries": "read",
    "get_delivery": "read",
    "redeliver": "operate",
    "recover_subscription": "operate",
    "test_subscription": "operate",
    "subscription_health": "read",
    "replay_webhook": "operate",
    "list_replays": "read",
    "get_replay": "read",
    "list_inbound_events": "read",
    "get_inbound_event": "read",
    "list_dead_letters": "read",
    "get_dead_letter": "read",
    "retry_dead_letter": "operate",
    "list_audit": "admin",
    "rekey": "admin",
}

TOKENS: dict[Role, str] = {role: f"{role}-token-{uuid.uuid4().hex}" for role in ROLES}


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    lines = [
        f"- {{name: {role}-1, role: {role}, sha256: {token_digest(token)}}}"
        for role, token in TOKENS.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_roles_nest():
    assert [a for a in ("read", "operate", "admin") if allows("viewer", a)] == ["read"]  # type: ignore[arg-type]
    assert [a for a in ("read", "operate", "admin") if allows("operator", a)] == [  # type: ignore[arg-type]
        "read",
        "operate",
    ]
    assert all(allows("admin", a) for a in ("read", "operate", "admin"))


async def test_each_role_is_allowed_and_refused_on_every_route_and_each_refusal_audited(
    settings: Settings, topics: Topics, tmp_path: Path
):
    configured = settings.model_copy(update={"admin_tokens_file": tokens_file(tmp_path)})
    async with running_admin(configured, topics) as admin:
        ops = operations(admin.ctx)
        assert {op.operation_id: op.needs for op in ops} == EXPECTED
        refused: dict[str, tuple[str, str]] = {}  # request id → (actor, action)
        for op in ops:
            path = op.path.replace("{id}", "does_not_exist")
            for role, token in TOKENS.items():
                rid = f"roles-{op.operation_id}-{role}"
                response = await admin.client.request(
                    op.method,
                    path,
                    headers={"Authorization": f"Bearer {token}", "X-Request-Id": rid},
                    json={} if op.body is not None else None,
                )
                assert response.headers["x-request-id"] == rid
                if allows(role, op.needs):
                    assert response.status_code not in (401, 403), (op.operation_id, role)
                    continue
                assert response.status_code == 403, (op.operation_id, role, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                problem = response.json()
                assert problem["status"] == 403 and problem["type"].endswith("/forbidden")
                refused[rid] = (f"{role}-1", op.audit_action)
        assert len(refused) == sum(
            not allows(r, op.needs) for op in ops for r in ROLES
        )  # every refusal counted once

        found: dict[str, tuple[str, str]] = {}

        async def all_audited() -> bool:
            cursor = None
            found.clear()
            while True:
                params: dict[str, str | int] = {"outcome": "refused", "limit": 500}
                if cursor:
                    params["cursor"] = cursor
                page = (await admin.client.get("/v1/audit", params=params)).json()
                for item in page.get("items", []):
                    found[item["request_id"]] = (item["actor"], item["action"])
                    assert item["status"] == 403 and item["method"] in (
                        "GET",
                        "POST",
                        "PUT",
                        "PATCH",
                        "DELETE",
                    )
                cursor = page.get("next_cursor")
                if not cursor:
                    return all(rid in found for rid in refused)

        await wait_until(all_audited, timeout=30, message="every refusal in GET /v1/audit")
        assert {rid: found[rid] for rid in refused} == refused


async def test_a_request_without_a_valid_token_is_refused_and_audited_as_anonymous(admin):
    bad = httpx.AsyncClient(transport=admin.client._transport, base_url="http://admin")
    async with bad:
        response = await bad.get(
            "/v1/subscriptions",
            headers={"Authorization": "Bearer not-a-token", "X-Request-Id": "anon-1"},
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def audited() -> bool:
        page = (await admin.client.get("/v1/audit", params={"actor": "anonymous"})).json()
        return any(i["request_id"] == "anon-1" for i in page.get("items", []))

    await wait_until(audited, timeout=20, message="the 401 in the audit trail")
    page = (await admin.client.get("/v1/audit", params={"actor": "anonymous"})).json()
    entry = next(i for i in page["items"] if i["request_id"] == "anon-1")
    assert entry["action"] == "auth.refused" and entry["outcome"] == "refused"
    assert entry["status"] == 401 and entry["path"] == "/v1/subscriptions"


async def test_a_mutation_is_audited_with_its_actor_resource_and_outcome(admin):
    response = await admin.client.post(
        "/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/hook"},
        headers={"X-Request-Id": "create-1"},
    )
    assert response.status_code == 201
    sub_id = response.json()["id"]
    # Audited before the answer: the entry is on the topic already.
    records = await read_topic(admin.settings.kafka_bootstrap_servers, admin.topics.audit)
    assert any(b'"create-1"' in (r.value or b"") for r in records)
    page = await admin.client.get("/v1/audit", params={"resource_id": sub_id})

    async def audited() -> bool:
        nonlocal page
        page = await admin.client.get("/v1/audit", params={"resource_id": sub_id})
        return bool(page.json()["items"])

    await wait_until(audited, timeout=20, message="the create in GET /v1/audit")
    entry = page.json()["items"][0]
    assert entry["actor"] == "admin" and entry["role"] == "admin"
    assert entry["action"] == "subscription.create" and entry["resource"] == "subscription"
    assert entry["outcome"] == "allowed" and entry["status"] == 201
    assert entry["request_id"] == "create-1" and len(entry["change_digest"]) == 64


def test_the_plain_token_is_one_admin():
    from services.admin.auth import Tokens

    tokens = Tokens(plain=[TEST_ADMIN_TOKEN])
    principal = tokens.lookup(TEST_ADMIN_TOKEN)
    assert principal is not None and principal.role == "admin" and principal.name == "admin"
    assert tokens.lookup(TEST_ADMIN_TOKEN + "x") is None
    assert tokens.lookup("") is None
