"""The admin API as a Starlette app: named tokens and roles, the audit trail, the operation
table, health and OpenAPI."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import InternalError
from shared.health import health_routes
from shared.problems import problem_for_http_exception, problem_response
from shared.settings import Settings

from .console import ConsoleFirst, console_app
from .context import AdminContext
from .guard import OPEN_PATHS, Authenticate
from .openapi import openapi_document
from .routes import operations, starlette_routes
from .web import json_response

access_log = logging.getLogger("hookline.admin.access")


def _version() -> str:
    try:
        return package_version("hookline")
    except PackageNotFoundError:
        return "0"


class AccessLog:
    """One line per request: method, path, status, milliseconds (never bodies or headers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if scope["path"] not in OPEN_PATHS:
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status["code"],
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem_response(problem_for_http_exception(exc, request.method))


async def _unexpected(request: Request, exc: Exception) -> Response:
    logging.getLogger("hookline.admin").error(
        "unexpected error",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"path": request.url.path},
    )
    return problem_response(InternalError("an unexpected error"))


def create_admin_app(settings: Settings, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The admin API; its lifespan starts and stops the Kafka clients and views it uses.

    Raises :class:`~shared.errors.ConfigurationError` when ``HOOKLINE_SECRET_KEY`` is
    missing, or no admin token is registered (``HOOKLINE_ADMIN_TOKENS_FILE``,
    ``HOOKLINE_ADMIN_TOKEN``).
    """
    ctx = AdminContext(settings)
    ops = operations(ctx)
    document = openapi_document(ops, version=_version())

    async def openapi(_: Request) -> Response:
        return json_response(document)

    routes: list[BaseRoute] = [
        *health_routes(ctx.readiness),
        Route("/openapi.json", openapi, methods=["GET"]),
        *starlette_routes(ops, lambda: ctx.audit),
        *extra_routes,
    ]
    app = Starlette(
        routes=routes,
        lifespan=ctx.lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.add_middleware(Authenticate, tokens=ctx.tokens, trail=lambda: ctx.audit)
    # The operator console (/console) signs in with the same tokens, into a session.
    app.add_middleware(ConsoleFirst, console=console_app(ctx, ops))
    app.add_middleware(AccessLog)
    app.state.admin = ctx
    return app
