"""The admin API as a Starlette app: bearer auth, the operation table, health and OpenAPI."""

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

from shared.crypto import constant_time_equals
from shared.errors import InternalError, Unauthorized
from shared.health import health_routes
from shared.problems import problem_for_http_exception, problem_response
from shared.settings import Settings

from .console import console_routes
from .context import AdminContext
from .openapi import openapi_document
from .routes import operations, starlette_routes
from .web import json_response

access_log = logging.getLogger("hookline.admin.access")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# The console authenticates its own requests (a session cookie from a named token).
CONSOLE_PREFIX = "/console"


def _version() -> str:
    try:
        return package_version("hookline")
    except PackageNotFoundError:
        return "0"


class BearerAuth:
    """401 unless ``Authorization: Bearer <one of the tokens>``; health paths stay open.

    Every configured token is compared, in constant time, whatever matched first.
    """

    def __init__(self, app: ASGIApp, tokens: Sequence[str]) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]

    def allowed(self, header: bytes | None) -> bool:
        if header is None:
            return False
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        given = given.strip()
        ok = False
        for token in self.tokens:
            ok |= constant_time_equals(given, token)
        return ok and bool(given)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in OPEN_PATHS or _console(path):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or ()).get(b"authorization")
        if not self.allowed(header):
            response = problem_response(
                Unauthorized(
                    "send Authorization: Bearer <an admin token>",
                    headers={"WWW-Authenticate": 'Bearer realm="hookline"'},
                )
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _console(path: str) -> bool:
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


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

    Raises :class:`~shared.errors.ConfigurationError` when ``HOOKLINE_SECRET_KEY`` or
    ``HOOKLINE_ADMIN_TOKEN`` is missing.
    """
    ctx = AdminContext(settings)
    ops = operations(ctx)
    document = openapi_document(ops, version=_version())

    async def openapi(_: Request) -> Response:
        return json_response(document)

    routes: list[BaseRoute] = [
        *health_routes(ctx.readiness),
        Route("/openapi.json", openapi, methods=["GET"]),
        *starlette_routes(ops),
        *console_routes(ctx, ops),
        *extra_routes,
    ]
    app = Starlette(
        routes=routes,
        lifespan=ctx.lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.add_middleware(BearerAuth, tokens=ctx.tokens)
    app.add_middleware(AccessLog)
    app.state.admin = ctx
    return app
