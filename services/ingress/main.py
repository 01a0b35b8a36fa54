"""``hookline ingress``: the public webhook app, one uvicorn server, until SIGTERM.

With ``HOOKLINE_INGRESS_WORKERS=N`` (N > 1) it is N such processes on the one port
(``SO_REUSEPORT``), forked and stopped together by a supervisor (``_workers``).

Lifecycle: the server starts and runs the app's lifespan (topics, producer,
config view); SIGTERM or SIGINT: it stops accepting connections, lets in-flight
requests finish, runs the lifespan's shutdown (the producer drains), and ``run``
returns 0. A server that fails to start returns 1. The admin API is a service of
its own (``hookline admin``); this process holds no admin token.

Process-wide tuning (log records, the garbage collector) is this entry point's, not
the app's: an app built in a test or mounted elsewhere leaves its interpreter alone.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
from collections.abc import Iterator

from starlette.applications import Starlette

from shared.health import quiet_server, run_service, serve_until_signalled
from shared.logging import configure_logging
from shared.settings import Settings

from ._app import create_ingress_app
from ._workers import reuse_port_socket, supervise


async def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    """Serve until signalled; with ``reuse_port``, on a socket of its own that shares the
    port with the other workers (``SO_REUSEPORT``)."""
    sockets = None
    if reuse_port:
        sockets = [reuse_port_socket(settings.host, settings.ingress_port)]
    server = quiet_server(
        serving_app(settings),
        settings.host,
        settings.ingress_port,
        http="httptools",
        loop="none",
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        # The app reads X-Forwarded-For itself, from HOOKLINE_TRUSTED_PROXIES only;
        # uvicorn's own rewrite would trust loopback peers behind our back.
        proxy_headers=False,
    )
    return await serve_until_signalled(server, name="ingress", sockets=sockets)


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
    return create_ingress_app(settings, while_serving=frozen_startup_heap)


def run(settings: Settings) -> int:
    configure_logging("ingress", settings.log_level, fmt=settings.log_format)
    workers = settings.ingress_workers
    if workers > 1:
        return supervise(workers, lambda: run_service(serve(settings, reuse_port=True)))
    return run_service(serve(settings))
