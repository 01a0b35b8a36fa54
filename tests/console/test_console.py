"""The console over HTTP in this process: sign-in, the cookie, headers, roles, CSRF, audit."""

from __future__ import annotations

import re

import pytest

from services.admin.audit import AuditEntry
from services.admin.auth import Principal
from services.admin.console.core import Console
from shared.cloudevents import decode
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_until
from tests.console.conftest import (
    ADMIN_TOKEN,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    Browserless,
    csrf_of,
)

pytestmark = pytest.mark.kafka

PAGES = [
    "/console/",
    "/console/webhooks",
    "/console/runs",
    "/console/subscriptions",
    "/console/deliveries",
    "/console/dead-letters",
]


async def audit_entries(console: Browserless) -> list[dict[str, object]]:
    ctx = console.app.state.admin
    records = await read_topic(ctx.settings.kafka_bootstrap_servers, ctx.topics.audit)
    return [decode(list(r.headers.items()), r.value, AuditEntry).data.model_dump() for r in records]


async def test_signing_in_sets_a_strict_http_only_secure_cookie_without_the_token(
    console: Browserless,
) -> None:
    answer = await console.sign_in(ADMIN_TOKEN)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "hookline_console=" in c)
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/console"} <= attributes
    assert ADMIN_TOKEN not in cookie
    page = await console.client.get("/console/")
    assert page.status_code == 200 and "ada" in page.text


async def test_a_wrong_token_is_refused_and_every_page_needs_a_session(
    console: Browserless,
) -> None:
    answer = await console.sign_in("not-a-token-at-all")
    assert answer.status_code == 401
    assert "hookline_console=" not in "".join(answer.headers.get_list("set-cookie"))
    for path in PAGES:
        page = await console.client.get(path)
        assert page.status_code == 303 and page.headers["location"] == "/console/sign-in"


async def test_every_page_has_the_security_headers_and_no_inline_script_or_style(
    console: Browserless,
) -> None:
    await console.sign_in(ADMIN_TOKEN)
    for path in [*PAGES, "/console/sign-in"]:
        page = await console.client.get(path, follow_redirects=True)
        assert page.status_code == 200, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        assert page.headers["cache-control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), f"inline script on {path}"
        assert " style=" not in page.text and "<style" not in page.text, path
        for form in re.findall(r'<form[^>]*method="post".*?</form>', page.text, re.S):
            assert 'name="csrf"' in form, f"a form without a CSRF token on {path}"


async def test_a_post_without_the_csrf_token_is_refused_and_audited(console: Browserless) -> None:
    ctx = console.app.state.admin
    await put_entities(
        ctx.settings.kafka_bootstrap_servers,
        ctx.topics.config,
        subscription("sub-csrf", url="http://127.0.0.1:9/hook"),
    )
    await wait_until(lambda: ctx.view.subscription("sub-csrf") is not None, timeout=10)
    await console.sign_in(OPERATOR_TOKEN)
    page = await console.client.get("/console/deliveries")
    assert page.status_code == 200
    for forged in ({}, {"csrf": "forged"}, {"csrf": csrf_of(page.text) + "x"}):
        answer = await console.client.post("/console/subscriptions/sub-csrf/disable", data=forged)
        assert answer.status_code == 403, forged
    await console.client.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
    answer = await console.client.post("/console/subscriptions/sub-csrf/disable", data={})
    assert answer.status_code == 403

    async def both_refusals_audited() -> bool:
        entries = await audit_entries(console)
        actors = {
            e["actor"]
            for e in entries
            if e["action"] == "subscription.disable" and e["outcome"] == "refused"
        }
        return actors >= {"otto", "anonymous"}

    await wait_until(
        both_refusals_audited, timeout=15, interval=0.5, message="the refusals in the trail"
    )
    assert ctx.view.subscription("sub-csrf").enabled, "nothing was disabled"


async def test_a_viewer_sees_no_action_and_its_posts_are_refused_by_the_apis_guard(
    console: Browserless,
) -> None:
    ctx = console.app.state.admin
    await put_entities(
        ctx.settings.kafka_bootstrap_servers,
        ctx.topics.config,
        subscription("sub-viewer", url="http://127.0.0.1:9/hook"),
    )
    await wait_until(lambda: ctx.view.subscription("sub-viewer") is not None, timeout=10)
    await console.sign_in(VIEWER_TOKEN)
    page = await console.client.get("/console/subscriptions/sub-viewer")
    assert page.status_code == 200
    posts = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text)
    assert posts == ["/console/sign-out"], posts
    answer = await console.client.post(
        "/console/subscriptions/sub-viewer/disable", data={"csrf": csrf_of(page.text)}
    )
    assert answer.status_code == 403
    assert ctx.view.subscription("sub-viewer").enabled

    async def refused_for_the_role() -> bool:
        return any(
            e["actor"] == "vera" and e["outcome"] == "refused" and str(e["path"]).startswith("/v1/")
            for e in await audit_entries(console)
        )

    await wait_until(
        refused_for_the_role, timeout=15, interval=0.5, message="the guard's refusal audited"
    )


async def test_an_operator_disables_a_subscription_through_the_api_and_it_is_audited(
    console: Browserless,
) -> None:
    ctx = console.app.state.admin
    await put_entities(
        ctx.settings.kafka_bootstrap_servers,
        ctx.topics.config,
        subscription("sub-op", url="http://127.0.0.1:9/hook"),
    )
    await wait_until(lambda: ctx.view.subscription("sub-op") is not None, timeout=10)
    await console.sign_in(OPERATOR_TOKEN)
    page = await console.client.get("/console/subscriptions/sub-op")
    assert "/console/subscriptions/sub-op/disable" in page.text
    assert "rotate-secret" not in page.text, "rotating a secret is an admin's"
    answer = await console.client.post(
        "/console/subscriptions/sub-op/disable", data={"csrf": csrf_of(page.text)}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/subscriptions/sub-op?done=disabled"
    assert not ctx.view.subscription("sub-op").enabled

    async def audited() -> bool:
        return any(
            e["actor"] == "otto"
            and e["action"] == "subscription.disable"
            and e["outcome"] == "allowed"
            and e["resource_id"] == "sub-op"
            for e in await audit_entries(console)
        )

    await wait_until(audited, timeout=15, interval=0.5, message="the disable in the trail")


async def test_an_operator_pauses_and_resumes_a_subscription_and_the_page_shows_which(
    console: Browserless,
) -> None:
    ctx = console.app.state.admin
    await put_entities(
        ctx.settings.kafka_bootstrap_servers,
        ctx.topics.config,
        subscription("sub-pause", url="http://127.0.0.1:9/hook"),
    )
    await wait_until(lambda: ctx.view.subscription("sub-pause") is not None, timeout=10)
    await console.sign_in(OPERATOR_TOKEN)
    page = await console.client.get("/console/subscriptions/sub-pause")
    assert "/sub-pause/pause" in page.text and "/sub-pause/resume" not in page.text
    answer = await console.client.post(
        "/console/subscriptions/sub-pause/pause", data={"csrf": csrf_of(page.text)}
    )
    assert answer.headers["location"] == "/console/subscriptions/sub-pause?done=paused"
    assert ctx.view.subscription("sub-pause").paused
    page = await console.client.get("/console/subscriptions/sub-pause")
    assert "paused: its deliveries wait" in page.text
    assert "/sub-pause/resume" in page.text and "/sub-pause/pause" not in page.text
    answer = await console.client.post(
        "/console/subscriptions/sub-pause/resume", data={"csrf": csrf_of(page.text)}
    )
    assert answer.headers["location"] == "/console/subscriptions/sub-pause?done=resumed"
    assert not ctx.view.subscription("sub-pause").paused


async def test_a_removed_token_ends_its_sessions(console: Browserless) -> None:
    await console.sign_in(ADMIN_TOKEN)
    assert (await console.client.get("/console/")).status_code == 200
    ctx = console.app.state.admin
    path = ctx.settings.admin_tokens_file
    path.write_text(path.read_text().split("- name: ada")[0] or "[]\n")
    ctx.tokens._next_check = 0.0  # the file is checked at most every second
    assert (await console.client.get("/console/")).status_code == 303


def test_a_session_cookie_that_was_changed_or_expired_is_no_session() -> None:
    from services.admin.console.session import SessionCodec

    codec = SessionCodec(b"k" * 32, lifetime=60)
    session = codec.new("ada", "admin", "ab" * 32, now=1000.0)
    cookie = codec.encode(session)
    assert codec.decode(cookie, now=1001.0) == session
    assert codec.decode(cookie, now=1061.0) is None, "expired on the server's clock"
    body, mac = cookie.split(".")
    assert codec.decode(body + "." + mac[:-2] + "AA", now=1001.0) is None
    assert codec.decode(body[:-4] + "AAAA." + mac, now=1001.0) is None
    assert SessionCodec(b"x" * 32, lifetime=60).decode(cookie, now=1001.0) is None
    assert codec.csrf_ok(session, codec.csrf_token(session))
    other = codec.new("ada", "admin", "ab" * 32, now=1000.0)
    assert not codec.csrf_ok(other, codec.csrf_token(session)), "bound to its session"


def test_only_the_operations_the_role_allows_are_offered() -> None:
    from services.admin.console.core import Viewer
    from services.admin.console.session import Session

    class Op:
        def __init__(self, needs: str) -> None:
            self.needs = needs

    console = Console.__new__(Console)
    console.operations = {"redeliver": Op("operate"), "rotate": Op("admin")}  # type: ignore[dict-item]
    session = Session("s", "vera", "viewer", "", 0)
    viewer = Viewer(session, Principal("vera", "viewer"), "")
    operator = Viewer(session, Principal("otto", "operator"), "")
    assert not console.may(viewer, "redeliver")
    assert console.may(operator, "redeliver") and not console.may(operator, "rotate")
    assert not console.may(operator, "pause_subscription"), "absent from the API: not offered"
