"""The console in a real browser against a real hookline: ingress, dispatcher (local
engine), delivery and admin as processes on one Kafka broker, a receiver on loopback.

One walk through an operator's day, a screenshot per step (``screenshots/NN-step.png``
under the test's folder) and axe-core on every page: sign in, post a signed webhook
and see it arrive, find its event and its run, see the run's deliveries arrive live,
make the receiver fail and watch a test event's attempts, redeliver it, recover a
failed run's deliveries since a time, retry a dead letter, sign out; then a viewer
sees no action and forged posts are refused and audited.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.async_api import Page, expect

from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_ADMIN_TOKEN
from testkit.config import put_entities, subscription, webhook, workflow
from testkit.receivers import Receiver
from tests.console.browser import Steps, axe_is_pinned, chromium
from tests.console.conftest import ADMIN_TOKEN, VIEWER_TOKEN, console_settings
from tests.e2e.stack import Stack, running

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]

GITHUB_SECRET = "console-github-secret"
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
README_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await __import__("asyncio").sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def push(stack: Stack, delivery: str | None = None) -> None:
    body = orjson.dumps(
        {"ref": "refs/heads/main", "repository": {"full_name": "octo/console"}, "commits": []}
    )
    signature = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{stack.url()}/webhooks/gh-console/github",
            content=body,
            headers={
                "content-type": "application/json",
                "x-github-event": "push",
                "x-github-delivery": delivery or str(uuid.uuid4()),
                "x-hub-signature-256": f"sha256={signature}",
            },
        )
    assert response.status_code == 202, response.text


async def audited(stack: Stack, action: str, outcome: str, actors: set[str]) -> None:
    """Wait until the audit trail (``GET /v1/audit``) holds entries of all ``actors``."""
    found: set[str] = set()
    auth = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}

    async def check() -> bool:
        async with httpx.AsyncClient(headers=auth) as client:
            answer = await client.get(
                f"{stack.admin_url()}/v1/audit", params={"action": action, "outcome": outcome}
            )
        assert answer.status_code == 200, answer.text
        found.update(item["actor"] for item in answer.json()["items"])
        return found >= actors

    await wait_for(check, 15, f"{action} {outcome} by {sorted(actors)} in the audit trail")


async def test_an_operator_works_the_console_in_a_browser(
    settings: Settings, topics: Topics, tmp_path: Path
) -> None:
    axe_is_pinned()
    settings = console_settings(settings, tmp_path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    steps = Steps(shots)
    async with Receiver() as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            workflow(
                "wf-console",
                nodes=[
                    {"id": "checkout", "kind": "log"},
                    {"id": "build", "kind": "sleep", "config": {"seconds": 2}},
                    {"id": "notify", "kind": "log"},
                ],
            ),
            webhook(
                "gh-console",
                provider="github",
                secrets=[GITHUB_SECRET],
                bindings=[{"workflow_id": "wf-console", "events": ["push"]}],
                description="CI pushes",
            ),
            subscription(
                "sub-console",
                url=receiver.url("/hook"),
                secrets=[RECEIVER_SECRET],
                events=["*"],
                description="the team's CI bot",
            ),
        )
        view = str(tmp_path / "admin-view.sqlite3")
        stack = Stack(
            settings,
            tmp_path / "logs",
            HOOKLINE_ADMIN_VIEW_PATH=view,
            HOOKLINE_ADMIN_TOKENS_FILE=str(settings.admin_tokens_file),
        )
        (tmp_path / "logs").mkdir()
        for service in ("delivery", "dispatcher", "admin", "ingress"):
            stack.add(service)
        async with running(stack), chromium(tmp_path / "profile") as browser:
            page = await browser.new_page()
            csp_errors: list[str] = []
            page.on(
                "console",
                lambda m: (
                    csp_errors.append(m.text) if "Content Security Policy" in m.text else None
                ),
            )
            try:
                await walk(page, stack, receiver, steps)
            except BaseException:
                await page.screenshot(path=str(shots / "failed.png"), full_page=True)
                print(stack.tail("admin-0", 60))
                raise
            assert csp_errors == [], "the pages need nothing the policy forbids"
            assert steps.findings == [], "axe-core: no serious or critical violation"
    if os.environ.get("HOOKLINE_README_SCREENSHOTS"):
        for name, target in (("overview", "console-overview"), ("attempts", "console-attempts")):
            found = sorted(shots.glob(f"*-{name}.png"))
            shutil.copy(found[-1], README_IMAGES / f"{target}.png")


async def walk(page: Page, stack: Stack, receiver: Receiver, steps: Steps) -> None:
    admin = stack.admin_url()

    # Sign in with a named admin token.
    await page.goto(f"{admin}/console/")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    await steps.axe(page, "sign-in")
    await page.fill("#token", ADMIN_TOKEN)
    await steps.shot(page, "sign-in")
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("Overview")
    await expect(page.locator(".who .name")).to_have_text("ada")

    # A signed webhook appears on its page without a reload.
    await page.goto(f"{admin}/console/webhooks/gh-console")
    await steps.axe(page, "webhook")
    rows = page.locator("tbody[data-live=inbound] tr")
    await expect(rows).to_have_count(0)
    await page.wait_for_timeout(700)  # the stream is open before the webhook is sent
    await push(stack)
    await expect(rows).to_have_count(1, timeout=20_000)
    await steps.shot(page, "inbound-live")

    # Its event: headers, body, source IP, verification, the run it started.
    await rows.first.locator("a").click()
    await expect(page.locator("h1")).to_contain_text("Inbound event")
    await expect(page.locator(".props")).to_contain_text("127.0.0.1")
    await expect(page.locator(".props")).to_contain_text("verified")
    run_link = page.locator("a[href^='/console/runs/']")

    async def run_listed() -> bool:
        if await run_link.count():
            return True
        await page.reload()
        return False

    await wait_for(run_listed, 20, "the event's run")
    await steps.axe(page, "event")
    await steps.shot(page, "event")

    # The run's deliveries arrive while its page is open (the workflow sleeps 2 s).
    await run_link.first.click()
    await expect(page.locator("h1")).to_contain_text("Run ")
    timeline = page.locator("#run-timeline")
    await expect(timeline).to_contain_text("workflow.completed", timeout=30_000)
    await expect(timeline).to_contain_text("succeeded")
    await expect(page.locator("#run-live .props")).to_contain_text("succeeded", timeout=10_000)
    await steps.axe(page, "run")
    await steps.shot(page, "run-live")
    await page.goto(f"{admin}/console/runs")
    await steps.axe(page, "runs")

    # The receiver fails: a test event's attempts appear one by one, then it gives up.
    receiver.script("/hook", [500] * 1000)
    await page.goto(f"{admin}/console/subscriptions/sub-console")
    await steps.axe(page, "subscription")
    await page.click("text=Send a test event")
    await expect(page.locator(".notice")).to_contain_text("Test event")
    delivery_id = re.search(r"delivery=(dlv_[0-9a-f]+)", page.url)
    assert delivery_id, page.url
    await page.goto(f"{admin}/console/deliveries?subscription_id=sub-console")
    await page.locator(f"#delivery-{delivery_id.group(1)} a").first.click(timeout=20_000)
    attempts = page.locator(".timeline > li")
    await expect(attempts.first).to_be_visible()
    await expect(attempts).to_have_count(4, timeout=30_000)  # the first and three retries
    await expect(page.locator("#delivery-live .props")).to_contain_text("exhausted")
    await steps.axe(page, "delivery")
    await steps.shot(page, "attempts")

    # Meanwhile a push's deliveries fail too (the recovery's work, below).
    test_delivery = page.url
    since = time.time() - 5
    await push(stack)
    await page.goto(f"{admin}/console/deliveries?subscription_id=sub-console&outcome=exhausted")
    await steps.axe(page, "deliveries")
    pushed = page.locator("tbody[data-live=delivery] tr").filter(has_not_text="test_")

    async def push_gave_up() -> bool:  # most of the run's 8 lifecycle events
        await page.reload()
        return await pushed.count() >= 5

    await wait_for(push_gave_up, 90, "the failing push's deliveries to give up")
    given_up = await pushed.count()

    # The receiver recovers: redeliver the test event.
    receiver.script("/hook", [])
    await page.goto(test_delivery)
    await page.click("text=Redeliver")
    await expect(page.locator(".notice")).to_contain_text("Redelivery requested")
    await expect(page.locator("#delivery-live .props")).to_contain_text("succeeded", timeout=20_000)
    await steps.shot(page, "redelivered")

    # Recover the subscription since a time: the failed push's deliveries go again.
    await page.goto(f"{admin}/console/deliveries?subscription_id=sub-console&outcome=exhausted")
    moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since))
    await page.fill("#r-since", moment)
    await steps.shot(page, "recover")
    await page.click("form[data-recover-form] button")
    await expect(page.locator(".notice")).to_contain_text("Recovery", timeout=20_000)
    sent = re.search(r"\((\d+) sent again\)", await page.locator(".notice").inner_text())
    assert sent and int(sent.group(1)) >= given_up, "the push's failed deliveries, sent again"
    await page.goto(f"{admin}/console/deliveries?subscription_id=sub-console&outcome=succeeded")
    await steps.shot(page, "recovered")

    # A dead letter: inspect it, retry it.
    await page.goto(f"{admin}/console/dead-letters")
    await steps.axe(page, "dead-letters")
    await page.locator("tbody tr a").first.click()
    await expect(page.locator("h1")).to_contain_text("Dead letter")
    await steps.axe(page, "dead-letter")
    await page.click("text=Retry")
    await expect(page.locator(".notice")).to_contain_text("written back")
    await expect(page.locator(".props")).to_contain_text("dlr-")
    await steps.shot(page, "dead-letter-retried")

    # The overview, with an hour of this.
    await page.goto(f"{admin}/console/")
    await expect(page.locator("svg.chart")).to_have_count(5)
    await steps.axe(page, "overview")
    await steps.shot(page, "overview")
    for name in ("webhooks", "subscriptions"):
        await page.goto(f"{admin}/console/{name}")
        await steps.axe(page, name)

    # On a phone's width nothing runs off the page (wide tables scroll in their box).
    await page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/console/", f"/console/deliveries/{delivery_id.group(1)}", "/console/deliveries"):
        await page.goto(admin + path)
        overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    await steps.shot(page, "phone")
    await page.set_viewport_size({"width": 1280, "height": 900})

    # Sign out: the session is gone.
    await page.click("text=Sign out")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    await page.goto(f"{admin}/console/deliveries")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    await steps.shot(page, "signed-out")
    await audited(stack, "delivery.redeliver", "allowed", {"ada"})

    await a_viewer_sees_no_actions_and_forgeries_fail(page, stack, steps, delivery_id.group(1))


async def a_viewer_sees_no_actions_and_forgeries_fail(
    page: Page, stack: Stack, steps: Steps, delivery_id: str
) -> None:
    admin = stack.admin_url()
    await page.fill("#token", VIEWER_TOKEN)
    await page.click("button[type=submit]")
    await expect(page.locator(".who")).to_contain_text("viewer")
    for path in (
        f"/console/deliveries/{delivery_id}",
        "/console/subscriptions/sub-console",
        "/console/webhooks/gh-console",
        "/console/deliveries",
    ):
        await page.goto(admin + path)
        actions = page.locator("main form[method=post]")
        await expect(actions).to_have_count(0)
    await page.goto(f"{admin}/console/deliveries/{delivery_id}")
    await steps.shot(page, "viewer")

    # A viewer's own post, with a valid CSRF token, is refused for the role.
    csrf = await page.locator(".who input[name=csrf]").get_attribute("value")
    status = await page.evaluate(
        """async ([url, csrf]) => (await fetch(url, {method: 'POST',
            headers: {'content-type': 'application/x-www-form-urlencoded'},
            body: 'csrf=' + encodeURIComponent(csrf)})).status""",
        [f"/console/deliveries/{delivery_id}/redeliver", csrf],
    )
    assert status == 403

    # A page on another site posts a form to the console: no cookie, no token, refused.
    await page.route(
        "http://evil.example/",
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<form method="post" action="{admin}/console/deliveries/{delivery_id}/redeliver">'
            '<button id="go">win a prize</button></form>',
        ),
    )
    await page.goto("http://evil.example/")
    async with page.expect_response(re.compile(r"/redeliver$")) as answer:
        await page.click("#go")
    assert (await answer.value).status == 403
    await steps.shot(page, "forged-post-refused")

    # The same post from a signed-in page, without the CSRF token: refused.
    await page.goto(f"{admin}/console/deliveries/{delivery_id}")
    status = await page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST',
            headers: {'content-type': 'application/x-www-form-urlencoded'},
            body: 'csrf=forged'})).status""",
        f"/console/deliveries/{delivery_id}/redeliver",
    )
    assert status == 403
    await audited(stack, "delivery.redeliver", "refused", {"anonymous", "vera"})
