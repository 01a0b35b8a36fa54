"""Every error status of both apps is an RFC 9457 problem document: one row per status,
driven through the real ingress and the real admin API against the broker.

Each answer is ``application/problem+json`` with ``type`` (the base and the slug the
design lists for the status), ``title``, ``status`` (the HTTP status) and ``detail``;
a 422 adds its failing fields; the headers that carried meaning before still come.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.admin import create_admin_app
from services.admin.resources import Resource
from services.ingress import _handler
from shared.entities import RateLimit
from shared.errors import PROBLEM_TYPE_BASE
from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_ADMIN_TOKEN
from testkit.config import put_entities, webhook
from tests.ingress.helpers import github_headers, ingress_client

pytestmark = pytest.mark.kafka

GH = "gh-secret-problems"
PUSH = json.dumps({"ref": "refs/heads/main"}).encode()
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}

Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Row:
    what: str
    status: int
    slug: str
    call: Call
    header: str | None = None  # a header the answer must carry
    client: str = "main"


def gh(
    body: bytes = PUSH, *, delivery: str = "d-1", extra: dict[str, str] | None = None
) -> dict[str, str]:
    return {
        **github_headers(GH, body, "push", delivery),
        "Content-Type": "application/json",
        **(extra or {}),
    }


def post(path: str, body: bytes = PUSH, headers: Callable[[], dict[str, str]] = gh) -> Call:
    # Headers are made when the request is sent: signatures are timestamped.
    return lambda http: http.post(path, content=body, headers=headers())


INGRESS = [
    Row(
        "body is not JSON",
        400,
        "malformed",
        post("/webhooks/gh/github", b"{no", lambda: gh(b"{no")),
    ),
    Row(
        "wrong signature",
        401,
        "unauthorized",
        post("/webhooks/gh/github", headers=lambda: gh(extra={"X-Hub-Signature-256": "sha256=00"})),
    ),
    Row("source outside the allowlist", 403, "forbidden", post("/webhooks/gh-cidr/github")),
    Row("unknown webhook", 404, "not_found", post("/webhooks/nobody/github")),
    Row("unknown path", 404, "not_found", lambda http: http.get("/nowhere")),
    Row(
        "GET on a webhook path",
        405,
        "method_not_allowed",
        lambda http: http.get("/webhooks/gh/github"),
        header="allow",
    ),
    Row(
        "body over the cap",
        413,
        "too_large",
        post("/webhooks/gh/github", b"x" * 5000, lambda: gh(b"x" * 5000)),
    ),
    Row(
        "a type GitHub never sends",
        415,
        "unsupported_media_type",
        post("/webhooks/gh/github", headers=lambda: gh(extra={"Content-Type": "text/plain"})),
    ),
    Row("first of the bucket", 202, "", post("/webhooks/gh-slow/github", headers=lambda: gh())),
    Row(
        "rate limit",
        429,
        "rate_limited",
        post("/webhooks/gh-slow/github", headers=lambda: gh(delivery="d-2")),
        header="retry-after",
    ),
    Row(
        "acknowledgement missed the deadline",
        503,
        "unavailable",
        post("/webhooks/gh/github", headers=lambda: gh(delivery="d-late")),
        header="retry-after",
        client="late",
    ),
    Row(
        "a bug in the pipeline",
        500,
        "internal",
        post("/webhooks/gh/github", headers=lambda: gh(delivery="d-bug")),
        client="buggy",
    ),
]


def check(row: Row, answer: httpx.Response) -> list[str]:
    """What is wrong with ``answer`` for ``row``, if anything."""
    if answer.status_code != row.status:
        return [f"status {answer.status_code}: {answer.text[:300]}"]
    if row.status < 400:
        return []
    problems: list[str] = []
    if answer.headers.get("content-type") != "application/problem+json":
        problems.append(f"content-type {answer.headers.get('content-type')}")
    body = answer.json()
    if body.get("type") != PROBLEM_TYPE_BASE + row.slug:
        problems.append(f"type {body.get('type')}")
    if body.get("status") != row.status:
        problems.append(f"status member {body.get('status')}")
    problems += [
        f"no {member}"
        for member in ("title", "detail")
        if not isinstance(body.get(member), str) or not body[member]
    ]
    if row.header is not None and not answer.headers.get(row.header):
        problems.append(f"no {row.header} header")
    if row.status == 422 and not all(
        set(e) == {"loc", "msg", "type"} for e in body.get("errors") or [None]
    ):
        problems.append(f"errors {body.get('errors')}")
    return problems


async def failures(rows: list[Row], http: httpx.AsyncClient) -> list[tuple[str, list[str]]]:
    """Each row's request, in order, and what is wrong with its answer."""
    answers = [(row, await row.call(http)) for row in rows]
    return [(row.what, problems) for row, answer in answers if (problems := check(row, answer))]


async def test_every_error_of_the_ingress_is_a_problem_document(
    settings: Settings, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh", provider="github", secrets=[GH]),
        webhook("gh-cidr", provider="github", secrets=[GH], allowed_cidrs=["192.0.2.0/24"]),
        webhook(
            "gh-slow",
            provider="github",
            secrets=[GH],
            rate_limit=RateLimit(per_second=0.01, burst=1),
        ),
    )
    statuses = {r.status for r in INGRESS}
    assert statuses >= {400, 401, 403, 404, 405, 413, 415, 429, 500, 503}
    main = settings.model_copy(update={"max_body_bytes": 4096})
    late = settings.model_copy(update={"publish_timeout": 0.0001})
    wrong = []
    async with ingress_client(main) as main_http, ingress_client(late) as late_http:
        wrong += await failures([r for r in INGRESS if r.client == "main"], main_http)
        wrong += await failures([r for r in INGRESS if r.client == "late"], late_http)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(_handler, "parse_body", broken)
        wrong += await failures([r for r in INGRESS if r.client == "buggy"], main_http)
    assert not wrong, wrong


ADMIN = [
    Row(
        "body is not JSON",
        400,
        "malformed",
        lambda http: http.post("/v1/webhooks", content=b"{no", headers=JSON),
    ),
    Row("no token", 401, "unauthorized", lambda http: http.get("/v1/webhooks"), "www-authenticate"),
    Row("unknown id", 404, "not_found", lambda http: http.get("/v1/webhooks/nobody", headers=AUTH)),
    Row("unknown path", 404, "not_found", lambda http: http.get("/v1/nothing", headers=AUTH)),
    Row(
        "DELETE on a collection",
        405,
        "method_not_allowed",
        lambda http: http.delete("/v1/webhooks", headers=AUTH),
        header="allow",
    ),
    Row(
        "the id exists",
        409,
        "already_exists",
        lambda http: http.post("/v1/webhooks", json={"id": "wh-1"}, headers=AUTH),
    ),
    Row(
        "a stale If-Match",
        412,
        "version_conflict",
        lambda http: http.patch(
            "/v1/webhooks/wh-1", json={"enabled": False}, headers={**AUTH, "If-Match": '"9"'}
        ),
        header="etag",
    ),
    Row(
        "body over the limit",
        413,
        "too_large",
        lambda http: http.post("/v1/webhooks", content=b" " * (1024 * 1024 + 1), headers=JSON),
    ),
    Row(
        "not JSON's type",
        415,
        "unsupported_media_type",
        lambda http: http.post(
            "/v1/webhooks", content=b"{}", headers={**AUTH, "Content-Type": "text/plain"}
        ),
    ),
    Row(
        "a field that does not validate",
        422,
        "invalid",
        lambda http: http.post("/v1/subscriptions", json={"url": "ftp://x"}, headers=AUTH),
    ),
    Row(
        "Kafka did not acknowledge in time",
        503,
        "unavailable",
        lambda http: http.post("/v1/webhooks", json={"id": "wh-late"}, headers=AUTH),
        header="retry-after",
        client="late",
    ),
    Row(
        "a bug in a handler",
        500,
        "internal",
        lambda http: http.get("/v1/workflows", headers=AUTH),
        client="buggy",
    ),
]


@asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The admin app in this process; an exception a handler raises stays in the app
    (its error handler answers it), as it would under uvicorn."""
    app = create_admin_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://admin", timeout=30
        ) as http:
            yield http


async def test_every_error_of_the_admin_api_is_a_problem_document(
    settings: Settings, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses = {r.status for r in ADMIN}
    assert statuses >= {400, 401, 404, 405, 409, 412, 413, 415, 422, 500, 503}
    late = settings.model_copy(update={"publish_timeout": 0.0001})
    wrong = []
    async with admin_client(settings) as main_http:
        created = await main_http.post("/v1/webhooks", json={"id": "wh-1"}, headers=AUTH)
        assert created.status_code == 201, created.text
        wrong += await failures([r for r in ADMIN if r.client == "main"], main_http)
    async with admin_client(late) as late_http:
        wrong += await failures([r for r in ADMIN if r.client == "late"], late_http)

    async def broken(self: Any, request: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Resource, "list_all", broken)
    async with admin_client(settings) as buggy_http:
        wrong += await failures([r for r in ADMIN if r.client == "buggy"], buggy_http)
    assert not wrong, wrong
