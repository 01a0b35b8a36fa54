"""Readiness: checks answer a bool or a Verdict; /readyz keeps its shape and adds reasons."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from shared.health import Readiness, Verdict, health_routes


async def _readyz(readiness: Readiness) -> tuple[int, dict[str, object]]:
    app = Starlette(routes=health_routes(readiness))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://h") as client:
        response = await client.get("/readyz")
    return response.status_code, response.json()


async def test_readyz_lists_checks_as_booleans_and_the_reasons_of_those_that_fail() -> None:
    readiness = Readiness()
    readiness.add("plain", lambda: True)
    readiness.add("delivery", lambda: Verdict(False, "events/2 has held offset 9 unsettled"))

    async def broken() -> bool:
        raise RuntimeError("no broker")

    readiness.add("broker", broken)
    status, body = await _readyz(readiness)
    assert status == 503
    assert body["status"] == "not ready"
    assert body["checks"] == {"plain": True, "delivery": False, "broker": False}
    assert body["reasons"] == {
        "delivery": "events/2 has held offset 9 unsettled",
        "broker": "the check failed: RuntimeError('no broker')",
    }
    assert await readiness.run() == body["checks"]


async def test_a_ready_service_answers_as_before() -> None:
    readiness = Readiness()
    readiness.add("delivery", lambda: Verdict(True))
    readiness.add("view", lambda: True)
    assert await _readyz(readiness) == (
        200,
        {"status": "ready", "checks": {"delivery": True, "view": True}},
    )
