"""The console's actions: each a form post that calls one admin API operation.

:func:`~.core.action` has signed in, authorized, checked CSRF and will audit; these
only turn a form into the operation's body and its answer into the next page: a
redirect with a fixed notice on success (reloading it does not post again), the
problem's detail on failure. A rotated secret is the exception: it is shown in the
answer itself, once, and never put in a URL.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .core import Console, Outcome, Viewer
from .opspages import utc_input

NOTICES = {
    "redelivered": "Redelivery requested: the delivery service sends it again now.",
    "recovered": "Recovery done: what failed in the window is being sent again.",
    "recovering": "Recovery started: what failed in the window is being sent again.",
    "retried": "Dead letter written back to its topic.",
    "replayed": "Replay started: the window's events are dispatched again as new runs.",
    "enabled": "Subscription enabled.",
    "disabled": "Subscription disabled: nothing is sent to it until it is enabled.",
    "paused": "Subscription paused: deliveries wait until it is resumed.",
    "resumed": "Subscription resumed.",
    "tested": "Test event handed to the delivery service.",
}


def done(path: str, notice: str, **extra: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode({'done': notice, **extra})}", status_code=303)


def failed(console: Console, request: Request, viewer: Viewer, outcome: Outcome) -> Response:
    return console.render(
        request,
        "failed.html",
        viewer,
        outcome.status,
        detail=outcome.problem,
        errors=outcome.body.get("errors") if isinstance(outcome.body, dict) else None,
        outcome_status=outcome.status,
        back=request.url.path.rsplit("/", 1)[0],  # the page the form was on
    )


def _idempotency(form: dict[str, str]) -> dict[str, str]:
    key = form.get("request_id", "").strip()[:128]
    return {"idempotency-key": key} if key else {}


async def redeliver(
    console: Console, request: Request, viewer: Viewer, form: dict[str, str]
) -> Response:
    delivery_id = request.path_params["id"]
    outcome = await console.invoke(request, viewer, "redeliver", {"id": delivery_id})
    if not outcome.ok:
        return failed(console, request, viewer, outcome)
    return done(f"/console/deliveries/{delivery_id}", "redelivered")


async def recover(
    console: Console, request: Request, viewer: Viewer, form: dict[str, str]
) -> Response:
    sub_id = request.path_params["id"]
    body = {"since": utc_input(form.get("since", ""))}
    if form.get("until", "").strip():
        body["until"] = utc_input(form["until"])
    outcome = await console.invoke(
        request, viewer, "recover_subscription", {"id": sub_id}, body, _idempotency(form)
    )
    if not outcome.ok:
        return failed(console, request, viewer, outcome)
    state = outcome.body if isinstance(outcome.body, dict) else {}
    notice = "recovered" if state.get("status") == "completed" else "recovering"
    return done(
        "/console/deliveries",
        notice,
        subscription_id=sub_id,
        count=str(int(state.get("redelivered") or 0)),
    )


async def retry_dead_letter(
    console: Console, request: Request, viewer: Viewer, form: dict[str, str]
) -> Response:
    item_id = request.path_params["id"]
    outcome = await console.invoke(
        request, viewer, "retry_dead_letter", {"id": item_id}, None, _idempotency(form)
    )
    if not outcome.ok:
        return failed(console, request, viewer, outcome)
    return done(f"/console/dead-letters/{item_id}", "retried")


async def replay(
    console: Console, request: Request, viewer: Viewer, form: dict[str, str]
) -> Response:
    webhook_id = request.path_params["id"]
    body = {"since": utc_input(form.get("since", ""))}
    if form.get("until", "").strip():
        body["until"] = utc_input(form["until"])
    outcome = await console.invoke(
        request, viewer, "replay_webhook", {"id": webhook_id}, body, _idempotency(form)
    )
    if not outcome.ok:
        return failed(console, request, viewer, outcome)
    return done(f"/console/webhooks/{webhook_id}", "replayed")


def switch(enabled: bool) -> object:
    async def handle(
        console: Console, request: Request, viewer: Viewer, form: dict[str, str]
    ) -> Response:
        sub_id = request.path_params["id"]
        verb = "enable" if enabled else "disable"
        outcome = await console.invoke(request, viewer, f"{verb}_subscription", {"id": sub_id})
        if not outcome.ok:
            return failed(console, request, viewer, outcome)
        return done(f"/console/subscriptions/{sub_id}", "enabled" if enabled else "disabled")

    return handle


def lifecycle(operation_id: str, notice: str) -> object:
    """Pause and resume, where the API has them (``pause_subscription``, ...)."""

    async def handle(
        console: Console, request: Request, viewer: Viewer, form: dict[str, str]
    ) -> Response:
        sub_id = request.path_params["id"]
        outcome = await console.invoke(request, viewer, operation_id, {"id": sub_id})
        if not outcome.ok:
            return failed(console, request, viewer, outcome)
        return done(f"/console/subscriptions/{sub_id}", notice)

    return handle


async def send_test(
    console: Console, request: Request, viewer: Viewer, form: dict[str, str]
) -> Response:
    sub_id = request.path_params["id"]
    outcome = await console.invoke(request, viewer, "test_subscription", {"id": sub_id})
    if not outcome.ok:
        return failed(console, request, viewer, outcome)
    delivery_id = outcome.body.get("delivery_id", "") if isinstance(outcome.body, dict) else ""
    return done(f"/console/subscriptions/{sub_id}", "tested", delivery=delivery_id)


async def rotate_secret(
    console: Console, request: Request, viewer: Viewer, form: dict[str, str]
) -> Response:
    sub_id = request.path_params["id"]
    outcome = await console.invoke(request, viewer, "rotate_subscription_secret", {"id": sub_id})
    if not outcome.ok:
        return failed(console, request, viewer, outcome)
    body = outcome.body if isinstance(outcome.body, dict) else {}
    return console.render(
        request, "secret.html", viewer, sub_id=sub_id, secret=body.get("secret", "")
    )
