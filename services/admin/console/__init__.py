"""The operator console: the admin service's pages under ``/console`` (see docs/console.md).

Server-rendered (Starlette and Jinja2), one stylesheet and one small script, no build
step. Signing in exchanges a named admin token for a session cookie; the token's role
decides which actions a page shows and which posts are carried out, each through the
admin API's own handler and audited. New deliveries and inbound events reach open
pages as server-sent events.

``console_app(ctx, operations)`` is the console as an ASGI app; the admin app puts
:class:`ConsoleFirst` in front of its bearer authentication to send ``/console`` there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from services.admin.context import AdminContext
from services.admin.routes import Operation

from . import actions, opspages, pages, signin
from .core import HERE, Console, SecurityHeaders, action, page
from .live import live

PREFIX = "/console"


class ConsoleFirst:
    """Sends ``/console`` to the console (its own sessions) and the rest to the API,
    whose bearer authentication the console's pages do not pass through."""

    def __init__(self, app: ASGIApp, console: ASGIApp) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await self.console(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def console_app(ctx: AdminContext, operations: list[Operation]) -> ASGIApp:
    """The console as an ASGI app of its own (it shares the admin's context)."""
    return Starlette(
        routes=console_routes(ctx, operations),
        middleware=[Middleware(SecurityHeaders)],
    )


def console_routes(ctx: AdminContext, operations: list[Operation]) -> list[BaseRoute]:
    console = Console(ctx, operations)
    console.templates.env.globals["notices"] = actions.NOTICES

    def bare(
        fn: Callable[[Console, Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await fn(console, request)

        return endpoint

    def post(path: str, fn: object, operation_id: str) -> Route:
        return Route(path, action(console, fn, operation_id), methods=["POST"])  # type: ignore[arg-type]

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    routes: list[BaseRoute] = [
        Route("/", page(console, pages.overview), methods=["GET"]),
        Route("/sign-in", bare(signin.sign_in_page), methods=["GET"]),
        Route("/sign-in", bare(signin.sign_in), methods=["POST"]),
        Route("/sign-out", bare(signin.sign_out), methods=["POST"]),
        Route("/live", page(console, live), methods=["GET"]),
        Route("/webhooks", page(console, pages.webhooks), methods=["GET"]),
        Route("/webhooks/{id}", page(console, pages.webhook), methods=["GET"]),
        Route("/events/{id}", page(console, pages.event), methods=["GET"]),
        Route("/runs", page(console, pages.runs), methods=["GET"]),
        Route("/runs/{id}", page(console, pages.run), methods=["GET"]),
        Route("/subscriptions", page(console, opspages.subscriptions), methods=["GET"]),
        Route("/subscriptions/{id}", page(console, opspages.subscription), methods=["GET"]),
        Route("/deliveries", page(console, opspages.deliveries), methods=["GET"]),
        Route("/deliveries/{id}", page(console, opspages.delivery), methods=["GET"]),
        Route("/dead-letters", page(console, opspages.dead_letters), methods=["GET"]),
        Route("/dead-letters/{id}", page(console, opspages.dead_letter), methods=["GET"]),
        post("/webhooks/{id}/replay", actions.replay, "replay_webhook"),
        post("/deliveries/{id}/redeliver", actions.redeliver, "redeliver"),
        post("/subscriptions/{id}/recover", actions.recover, "recover_subscription"),
        post("/subscriptions/{id}/test", actions.send_test, "test_subscription"),
        post("/subscriptions/{id}/enable", actions.switch(True), "enable_subscription"),
        post("/subscriptions/{id}/disable", actions.switch(False), "disable_subscription"),
        post(
            "/subscriptions/{id}/rotate-secret",
            actions.rotate_secret,
            "rotate_subscription_secret",
        ),
        post("/dead-letters/{id}/retry", actions.retry_dead_letter, "retry_dead_letter"),
    ]
    for verb, notice in (("pause", "paused"), ("resume", "resumed")):
        operation_id = f"{verb}_subscription"
        if operation_id in console.operations:  # shown and served only where the API has it
            routes.append(
                post(
                    f"/subscriptions/{{id}}/{verb}",
                    actions.lifecycle(operation_id, notice),
                    operation_id,
                )
            )
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="console-static"))
    return [Route(PREFIX, home, methods=["GET"]), Mount(PREFIX, routes=routes)]
