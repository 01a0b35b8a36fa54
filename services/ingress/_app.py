"""The public ingress app: the four webhook routes and the health routes.

Lifecycle (the Starlette lifespan): start — ensure the topics exist, start the
idempotent producer, read the config topic to its end; ready — requests are
served (before that they get 503); stop — stop routing to the pipeline, drain
the producer (flush what is in flight), close the config view.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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


def create_ingress_app(settings: Settings) -> Starlette:
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
            try:
                yield
            finally:
                state.clear()
                ingress.bind(None, None)

    async def generic(request: Request) -> Response:
        return await ingress(request, "generic")

    routes = [Route("/webhooks/{webhook_id}", generic, methods=["POST"])]
    routes += [
        Route(
            f"/webhooks/{{webhook_id}}/{provider}",
            partial(_provider_endpoint, ingress, provider),
            methods=["POST"],
            name=f"webhook-{provider}",
        )
        for provider in PROVIDERS
    ]
    app = Starlette(routes=[*routes, *health_routes(readiness)], lifespan=lifespan)
    app.state.ingress = ingress
    app.state.topics = topics
    return app


async def _provider_endpoint(ingress: WebhookIngress, provider: str, request: Request) -> Response:
    return await ingress(request, provider)
