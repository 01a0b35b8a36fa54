"""The public ingress app: the four webhook routes, one table, and nothing else.

Health and metrics are not public: ``/healthz``, ``/readyz`` and ``/metrics`` are
served on the internal port (``HOOKLINE_INGRESS_INTERNAL_PORT``) by
``services.ingress.main`` from the app's ``state.readiness``; here they are 404 like
any other path outside ``/webhooks/...``.

Lifecycle (the Starlette lifespan): start — in the background, retried with backoff
while Kafka does not answer (:mod:`shared.startup`): ensure the topics exist, start
the idempotent producer, read the config topic to its end, then enter the caller's
``while_serving`` context (the entry point's process tuning); ready — requests are
served (before that they get 503, and ``/readyz`` says why); stop — leave ``while_serving``, stop routing to
the pipeline, drain the producer (flush what is in flight), close the config view.

Every error is answered as an RFC 9457 problem document: the pipeline's refusals by
the pipeline, the router's 404 and 405 and a bug's 500 by the handlers here.

Routing is Starlette's router alone, webhook posts included. A fast path that matched
``/webhooks/...`` before Starlette (a second table, skipping the middleware) was measured
against it and did not pay: Starlette's middleware and router cost about 5 µs of CPU per
request in-process (6.2 against 1.3 µs, the pipeline stubbed out), and in the benchmark
(``python -m bench ingress``, two runs each, alternating, on a shared 2-core machine) the
ingress did 2,389 and 2,018 requests/s at 213 and 224 µs of CPU per request through the
router, 2,390 and 1,787 at 211 and 198 µs with the fast path: within the noise, the ratio
to the bare handler no better (0.30 and 0.28 against 0.23 and 0.15).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from shared import tracing
from shared.config_view import ConfigView
from shared.crypto import SecretBox
from shared.errors import ConfigurationError, InternalError
from shared.health import Readiness
from shared.kafka import ensure_topics
from shared.problems import problem_for_http_exception, problem_response
from shared.settings import Settings
from shared.startup import KafkaStartup
from shared.topics import topic_registry

from ._handler import WebhookIngress
from ._publisher import open_publisher
from ._tracing import traced_webhook

PROVIDERS = ("github", "gitlab", "slack")

log = logging.getLogger("hookline.ingress")


class _Endpoint:
    """A webhook route as a plain ASGI app: the pipeline reads the request off the
    ASGI channels and answers every outcome itself (no request or response objects)."""

    def __init__(self, ingress: WebhookIngress, provider: str) -> None:
        self._ingress = ingress
        self._provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        webhook_id = scope["path_params"]["webhook_id"]
        if tracing.enabled:
            await traced_webhook(self._ingress, scope, receive, send, self._provider, webhook_id)
            return
        await self._ingress.handle(scope, receive, send, self._provider, webhook_id)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem_response(problem_for_http_exception(exc, request.method))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error(
        "unexpected error",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"path": request.url.path},
    )
    return problem_response(InternalError("the request could not be handled"))


def create_ingress_app(
    settings: Settings,
    *,
    while_serving: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> Starlette:
    """The public app; its lifespan owns the producer and the config view.

    Its readiness (config view caught up, producer started) is ``app.state.readiness``,
    for the internal port's ``/readyz``.

    ``while_serving`` is entered once the app is ready and left when it stops: the
    entry point's process-wide tuning goes there, so an app built in a test leaves
    its interpreter as it found it.
    """
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

    startup = KafkaStartup("ingress")
    startup.register(readiness, secured=settings.kafka_security_protocol != "PLAINTEXT")

    async def start(stack: AsyncExitStack) -> None:
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            topics,
            replication_factor=settings.replication_factor,
        )
        await startup.check_access(settings, stack)
        await startup.watch(settings.kafka_bootstrap_servers, stack)
        publisher = await stack.enter_async_context(open_publisher(settings, topics.inbound))
        view = await stack.enter_async_context(
            ConfigView(settings.kafka_bootstrap_servers, topics.config, secret_box=box)
        )
        await view.wait_ready()
        stack.enter_context(while_serving())
        stack.callback(_unbind)
        ingress.bind(view, publisher)
        state.update(view_ready=True, publisher_ready=True)

    def _unbind() -> None:
        state.clear()
        ingress.bind(None, None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The server answers (503, /readyz not ready) while Kafka is being reached.
        async with startup.in_background(start):
            yield

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
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.ingress = ingress
    app.state.topics = topics
    app.state.readiness = readiness
    return app
