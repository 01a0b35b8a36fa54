"""The public ingress app: the four webhook routes and the health routes.

Lifecycle (the Starlette lifespan): start — ensure the topics exist, start the
idempotent producer, read the config topic to its end, freeze what start-up
built out of the collector's way; ready — requests are served (before that they
get 503); stop — unfreeze, stop routing to the pipeline, drain the producer
(flush what is in flight), close the config view.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from shared.config_view import ConfigView
from shared.crypto import SecretBox
from shared.errors import ConfigurationError
from shared.health import Readiness, health_routes
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import topic_registry

from ._handler import WebhookIngress
from ._publisher import Publisher

PROVIDERS = ("github", "gitlab", "slack")


class IngressApp(Starlette):
    """The public app. Webhook posts skip Starlette's middleware and router: they are
    the hot path, and their handler answers every error itself (a bug gets a logged
    500, as the error middleware would give). Everything else, including other
    methods on the webhook paths (405), goes through Starlette as usual."""

    ingress: WebhookIngress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = webhook_target(scope["path"])
            if target is not None:
                await self.ingress.handle(scope, receive, send, *target)
                return
        await super().__call__(scope, receive, send)


def webhook_target(path: str) -> tuple[str, str] | None:
    """``(provider, webhook id)`` for ``/webhooks/{id}`` (generic) and
    ``/webhooks/{id}/{provider}``, like the routes' patterns; else ``None``."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] or parts[1] != "webhooks" or not parts[2]:
        return None
    if len(parts) == 3:
        return "generic", parts[2]
    if len(parts) == 4 and parts[3] in PROVIDERS:
        return parts[3], parts[2]
    return None


class _Endpoint:
    """A webhook route as an ASGI app (reached through the router only when the
    fast path in :class:`IngressApp` is bypassed, e.g. by a mounting app)."""

    def __init__(self, ingress: WebhookIngress, provider: str) -> None:
        self._ingress = ingress
        self._provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        webhook_id = scope["path_params"]["webhook_id"]
        await self._ingress.handle(scope, receive, send, self._provider, webhook_id)


def create_ingress_app(settings: Settings) -> IngressApp:
    """The public app; its lifespan owns the producer and the config view."""
    if settings.secret_key is None:
        raise ConfigurationError("HOOKLINE_SECRET_KEY is required to read webhook secrets")
    box = SecretBox(settings.secret_key.get_secret_value())
    topics = topic_registry(
        settings.topic_prefix,
        partitions=settings.topic_partitions,
        retry_tiers=len(settings.retry_schedule),
    )
    ingress = WebhookIngress(settings)
    state: dict[str, object] = {}
    readiness = Readiness()
    readiness.add("config", lambda: bool(state.get("view_ready")))
    readiness.add("producer", lambda: bool(state.get("publisher_ready")))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            topics,
            replication_factor=settings.replication_factor,
        )
        async with (
            Publisher(settings.kafka_bootstrap_servers, topics.inbound) as publisher,
            ConfigView(settings.kafka_bootstrap_servers, topics.config, secret_box=box) as view,
        ):
            await view.wait_ready()
            ingress.bind(view, publisher)
            state.update(view_ready=True, publisher_ready=True)
            # What start-up built lives as long as the app: out of the collector's way,
            # so a full collection while serving does not walk it (a latency spike).
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()
                state.clear()
                ingress.bind(None, None)

    routes = [Route("/webhooks/{webhook_id}", _Endpoint(ingress, "generic"), methods=["POST"])]
    routes += [
        Route(
            f"/webhooks/{{webhook_id}}/{provider}",
            _Endpoint(ingress, provider),
            methods=["POST"],
            name=f"webhook-{provider}",
        )
        for provider in PROVIDERS
    ]
    app = IngressApp(routes=[*routes, *health_routes(readiness)], lifespan=lifespan)
    app.ingress = ingress
    app.state.ingress = ingress
    app.state.topics = topics
    return app
