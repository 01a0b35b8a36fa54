"""Health, readiness and metrics endpoints shared by every service.

Liveness (``/healthz``) says the process can answer. Readiness (``/readyz``)
runs named checks (config view caught up, broker reachable, …) and answers
503 listing the ones that fail. ``/metrics`` serves Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Check = Callable[[], bool | Awaitable[bool]]


class Readiness:
    """Named readiness checks; each returns True when its part is ready."""

    def __init__(self, timeout: float = 2.0) -> None:
        self._checks: dict[str, Check] = {}
        self._timeout = timeout

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self) -> dict[str, bool]:
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                outcome = check()
                if inspect.isawaitable(outcome):
                    outcome = await asyncio.wait_for(outcome, self._timeout)
                results[name] = bool(outcome)
            except Exception:  # a failing check means "not ready", never a 500
                results[name] = False
        return results


def health_routes(readiness: Readiness, registry: CollectorRegistry = REGISTRY) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        results = await readiness.run()
        ok = all(results.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": results},
            status_code=200 if ok else 503,
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
