"""Separate admin processes over one broker: each sees the other's writes, a restart
rebuilds the same state, and no secret is ever written in plaintext (topic or logs)."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_ADMIN_TOKEN
from testkit.kafka import read_topic

from .conftest import AdminProcess, running_admin, spawn

pytestmark = pytest.mark.kafka


async def until(client: httpx.AsyncClient, path: str, check: Any, timeout: float = 1.0) -> float:
    """Seconds until ``check(response)`` holds for GET ``path``; fails after ``timeout``."""
    started = time.monotonic()
    while True:
        response = await client.get(path)
        if check(response):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"{path}: not seen within {timeout}s (last {response.status_code})"
            )
        await asyncio.sleep(0.02)


async def test_two_processes_see_each_others_writes_within_a_second(
    settings: Settings, topics: Topics, admin_processes: list[AdminProcess], tmp_path: Path
):
    a = spawn(admin_processes, settings, tmp_path / "a.log")
    b = spawn(admin_processes, settings, tmp_path / "b.log")
    a.wait_ready()
    b.wait_ready()
    async with a.client() as ca, b.client() as cb:
        made = await ca.post(
            "/v1/subscriptions", json={"id": "shared", "url": "https://r.example/", "events": ["*"]}
        )
        assert made.status_code == 201
        await until(cb, "/v1/subscriptions/shared", lambda r: r.status_code == 200)

        # B writes on top of A's write, naming the version A made: no lost update.
        patched = await cb.patch(
            "/v1/subscriptions/shared", json={"enabled": False}, headers={"If-Match": '"1"'}
        )
        assert patched.status_code == 200 and patched.headers["etag"] == '"2"'
        await until(ca, "/v1/subscriptions/shared", lambda r: r.headers.get("etag") == '"2"')
        # A, asked to change version 1, knows it is stale.
        stale = await ca.put(
            "/v1/subscriptions/shared",
            json={"url": "https://r.example/other"},
            headers={"If-Match": '"1"'},
        )
        assert stale.status_code == 412

        # A write right after another process's write is based on it, even unasked.
        for i in range(5):
            answer = await (ca if i % 2 else cb).patch(
                "/v1/subscriptions/shared", json={"description": f"round {i}"}
            )
            assert answer.status_code == 200 and answer.headers["etag"] == f'"{3 + i}"'

        deleted = await cb.delete("/v1/subscriptions/shared")
        assert deleted.status_code == 204
        await until(ca, "/v1/subscriptions/shared", lambda r: r.status_code == 404)


async def snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    out = {}
    for kind in ("webhooks", "subscriptions", "workflows"):
        answer = await client.get(f"/v1/{kind}", params={"limit": 500})
        assert answer.status_code == 200
        out[kind] = answer.json()["items"]
    return out


async def test_a_restart_rebuilds_identical_state(
    settings: Settings, topics: Topics, admin_processes: list[AdminProcess], tmp_path: Path
):
    first = spawn(admin_processes, settings, tmp_path / "first.log").wait_ready()
    secrets: dict[str, str] = {}
    async with first.client() as client:
        for i in range(6):
            answer = await client.post(
                "/v1/subscriptions",
                json={"id": f"sub-{i}", "url": f"https://r{i}.example/", "events": ["workflow.*"]},
            )
            secrets[f"sub-{i}"] = answer.json()["secret"]
        rotated = await client.post("/v1/subscriptions/sub-2/rotate-secret")
        secrets["sub-2"] = rotated.json()["secret"]
        await client.delete("/v1/subscriptions/sub-4")
        await client.put(
            "/v1/webhooks/gh",
            json={
                "provider": "github",
                "secret": "github-secret-0123456789",
                "bindings": [{"workflow_id": "wf"}],
            },
        )
        await client.patch("/v1/webhooks/gh", json={"allowed_cidrs": ["10.1.0.0/16"]})
        await client.post("/v1/workflows", json={"id": "wf", "nodes": [{"id": "n", "kind": "log"}]})
        await client.post("/v1/workflows", json={"id": "wf-gone"})
        await client.delete("/v1/workflows/wf-gone")
        before = await snapshot(client)
    first.stop()

    second = spawn(admin_processes, settings, tmp_path / "second.log").wait_ready()
    async with second.client() as client:
        assert await snapshot(client) == before
    second.stop()

    # And in this process: the same entities, and every secret decrypts to what was shown.
    async with running_admin(settings, topics) as admin:
        assert await snapshot(admin.client) == before
        view = admin.ctx.view
        for sub_id, secret in secrets.items():
            if sub_id == "sub-4":
                assert view.subscription(sub_id) is None
                continue
            entity = view.subscription(sub_id)
            assert entity is not None and view.secrets(entity)[0] == secret
        assert len(view.secrets(view.subscription("sub-2"))) == 2  # type: ignore[arg-type]


async def test_no_secret_in_plaintext_in_the_config_topic_or_the_logs(
    settings: Settings, topics: Topics, admin_processes: list[AdminProcess], tmp_path: Path
):
    log_path = tmp_path / "admin.log"
    chatty = settings.model_copy(update={"log_level": "DEBUG"})
    server = spawn(admin_processes, chatty, log_path).wait_ready()
    plain: list[str] = ["github-secret-9f8e7d6c5b4a", "gitlab-token-0a1b2c3d4e5f"]
    async with server.client() as client:
        answer = await client.post(
            "/v1/webhooks", json={"id": "gh", "provider": "github", "secret": plain[0]}
        )
        assert answer.status_code == 201
        answer = await client.put(
            "/v1/webhooks/gl", json={"provider": "gitlab", "secret": plain[1]}
        )
        assert answer.status_code == 201
        generated = await client.post("/v1/webhooks", json={"provider": "generic"})
        plain.append(generated.json()["secret"])
        for _ in range(2):
            rotated = await client.post("/v1/webhooks/gh/rotate-secret")
            plain.append(rotated.json()["secret"])
        sub = await client.post("/v1/subscriptions", json={"url": "https://r.example/"})
        plain.append(sub.json()["secret"])
        given = "whsec_" + base64.b64encode(b"subscription-secret-bytes-32!!!!").decode()
        answer = await client.put(
            f"/v1/subscriptions/{sub.json()['id']}",
            json={"url": "https://r.example/", "secret": given},
        )
        assert answer.status_code == 200
        plain.append(given)
        rotated = await client.post(f"/v1/subscriptions/{sub.json()['id']}/rotate-secret")
        plain.append(rotated.json()["secret"])
        # A refused request that carries a secret must not echo or log it either.
        refused_secret = "refused-secret-77aa88bb99cc"
        refused = await client.post(
            "/v1/webhooks", json={"provider": "nope", "secret": refused_secret}
        )
        assert refused.status_code == 422 and refused_secret not in refused.text
        plain.append(refused_secret)
        # A malformed body echoes nothing of itself.
        malformed = await client.post(
            "/v1/webhooks", content=b'{"secret": "' + refused_secret.encode()
        )
        assert malformed.status_code == 400 and refused_secret not in malformed.text
    server.stop()

    records = await read_topic(settings.kafka_bootstrap_servers, topics.config)
    assert len(records) >= 8
    raw = b"".join(
        (r.key or b"") + (r.value or b"") + b"".join(k.encode() + v for k, v in r.headers.items())
        for r in records
    )
    log = log_path.read_bytes()
    assert b"config written" in log, "the service did log its writes"
    for secret in plain:
        forms = {secret, secret.removeprefix("whsec_")}
        for form in forms:
            assert form.encode() not in raw, (
                f"a secret is in the config topic in plaintext: {form[:6]}…"
            )
            assert form.encode() not in log, f"a secret is in the log: {form[:6]}…"
    assert TEST_ADMIN_TOKEN.encode() not in log
