"""Running the real ingress app in-process, and signing requests like each provider does."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette

from services.ingress import create_ingress_app
from shared.health import health_routes
from shared.settings import Settings
from shared.standard_webhooks import sign


@asynccontextmanager
async def ingress_clients(
    settings: Settings, *, client: tuple[str, int] = ("127.0.0.1", 40000)
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The app with its lifespan entered, behind httpx clients (no sockets): one for the
    public app, one for what the internal port serves (health, readiness, metrics)."""
    app = create_ingress_app(settings)
    internal = Starlette(routes=health_routes(app.state.readiness))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://ingress.test", timeout=30
            ) as public,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=internal), base_url="http://internal.test"
            ) as health,
        ):
            yield public, health


@asynccontextmanager
async def ingress_client(
    settings: Settings, *, client: tuple[str, int] = ("127.0.0.1", 40000)
) -> AsyncIterator[httpx.AsyncClient]:
    """The public app with its lifespan entered, behind an httpx client (no sockets)."""
    async with ingress_clients(settings, client=client) as (public, _):
        yield public


def github_headers(secret: str, body: bytes, event: str, delivery: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
        "User-Agent": "GitHub-Hookshot/test",
    }


def slack_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def standard_headers(
    secret: str, body: bytes, msg_id: str, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(msg_id, ts, body, secret),
    }
