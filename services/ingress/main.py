"""``hookline ingress``: the public webhook app and its internal port, until SIGTERM.

Two uvicorn servers in one process: the public port (``HOOKLINE_INGRESS_PORT``)
serves ``/webhooks/...`` alone, over HTTPS when ``HOOKLINE_TLS_CERTFILE`` and
``HOOKLINE_TLS_KEYFILE`` are set (:mod:`._tls`), with deadlines for slow clients and
a bound on open connections (:mod:`._edge`); the internal port
(``HOOKLINE_INGRESS_INTERNAL_PORT``) serves ``/healthz``, ``/readyz`` and
``/metrics``, like the other services' ports.

Lifecycle: the internal port starts (``/readyz`` is 503 until the app is ready),
then the public server runs the app's lifespan (topics, producer, config view);
SIGTERM or SIGINT: it stops accepting connections, lets in-flight requests finish,
runs the lifespan's shutdown (the producer drains), the internal port stops, and
``run`` returns 0. A server that fails to start, or an internal port that stops on
its own, returns 1. The admin API is a service of its own (``hookline admin``);
this process holds no admin token.

With ``HOOKLINE_INGRESS_WORKERS=N`` (N > 1) it is N such processes on the one port and
the one internal port (``SO_REUSEPORT``), forked and stopped together by a supervisor
(``_workers``); a probe or a scrape reaches one of them.

Process-wide tuning (log records, the garbage collector) is this entry point's, not
the app's: an app built in a test or mounted elsewhere leaves its interpreter alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette

from shared import tracing
from shared.health import (
    HealthServer,
    QuietServer,
    Readiness,
    quiet_server,
    run_service,
    serve_until_signalled,
)
from shared.logging import configure_logging
from shared.settings import Settings
from shared.startup import prepare_process

from ._app import create_ingress_app
from ._edge import EdgeLimits, edge_protocol
from ._tls import ReloadingCertificate
from ._workers import reuse_port_socket, supervise

log = logging.getLogger("hookline.ingress")


def public_server(app: Starlette, settings: Settings) -> QuietServer:
    """The public port's server: the edge protocol's deadlines and bound, HTTPS when set."""
    options: dict[str, Any] = {}
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        certificate = ReloadingCertificate(settings.tls_certfile, settings.tls_keyfile)
        options["ssl_context_factory"] = lambda config, default: certificate.context
    limits = EdgeLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections,
    )
    return quiet_server(
        app,
        settings.host,
        settings.ingress_port,
        http=edge_protocol(limits),
        loop="none",
        lifespan="on",
        timeout_keep_alive=settings.keepalive_timeout,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        # The app reads X-Forwarded-For itself, from HOOKLINE_TRUSTED_PROXIES only;
        # uvicorn's own rewrite would trust loopback peers behind our back.
        proxy_headers=False,
        **options,
    )


async def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    """Serve until signalled; with ``reuse_port``, on sockets of its own that share the
    ports with the other workers (``SO_REUSEPORT``)."""
    app = serving_app(settings)
    server = public_server(app, settings)
    readiness: Readiness = app.state.readiness
    sockets = health_sockets = None
    if reuse_port:
        sockets = [reuse_port_socket(settings.host, settings.ingress_port)]
        health_sockets = [reuse_port_socket(settings.host, settings.ingress_internal_port)]
    async with HealthServer(
        readiness, host=settings.host, port=settings.ingress_internal_port, sockets=health_sockets
    ) as health:
        # The internal port going down (its port taken) stops the public one too: a
        # process nobody can probe or scrape is restarted rather than left serving.
        stopped = asyncio.Event()
        watch = asyncio.create_task(health.until(stopped))
        watch.add_done_callback(lambda _: setattr(server, "should_exit", True))
        try:
            code = await serve_until_signalled(server, name="ingress", sockets=sockets)
        finally:
            stopped.set()
            await watch
        # Asked before the context stops the server (which then no longer looks failed).
        if health.failed:
            log.error("the internal port stopped", extra={"port": settings.ingress_internal_port})
            return 1
    return code


def tune_process() -> None:
    """Process-wide settings for a serving ingress.

    Log records stop looking up thread and process names: the JSON lines never
    show them, and a record is made for every request.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


@contextlib.contextmanager
def frozen_startup_heap() -> Iterator[None]:
    """What start-up built lives as long as the app: out of the collector's way while
    serving, so a full collection does not walk it (a latency spike); back at stop."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def serving_app(settings: Settings) -> Starlette:
    """The app as ``hookline ingress`` serves it (the benchmark serves the same)."""
    tune_process()
    tracing.configure("ingress")
    return create_ingress_app(settings, while_serving=frozen_startup_heap)


def run(settings: Settings) -> int:
    configure_logging("ingress", settings.log_level, fmt=settings.log_format)
    prepare_process(settings)
    workers = settings.ingress_workers
    if workers > 1:
        return supervise(workers, lambda: run_service(serve(settings, reuse_port=True)))
    return run_service(serve(settings))
