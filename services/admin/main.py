"""``hookline admin``: the admin API, on its own port, in its own process.

It serves ``/v1/...``, ``/openapi.json`` and its own ``/healthz``, ``/readyz``
and ``/metrics`` on ``HOOKLINE_ADMIN_PORT``, a port that is never exposed to the
internet. Start: JSON logging; the app's lifespan creates the topics, starts
its producer and reads ``config`` to its end, in the background and retried with
backoff while Kafka does not answer (the API answers 503 and ``/readyz`` says why
meanwhile; the operations view catches up behind); SIGTERM or SIGINT: stop accepting
connections, finish in-flight requests, stop the clients, exit 0. A server that cannot
start (its port taken, a credential or grant Kafka refuses) exits 1.
"""

from __future__ import annotations

import logging
import math

from shared import tracing
from shared.health import quiet_server, run_service, serve_until_signalled
from shared.logging import configure_logging
from shared.settings import Settings
from shared.startup import prepare_process

from .app import create_admin_app

log = logging.getLogger("hookline.admin")


async def serve(settings: Settings) -> int:
    server = quiet_server(
        create_admin_app(settings),
        settings.host,
        settings.admin_port,
        http="httptools",
        loop="none",
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        proxy_headers=False,
    )
    return await serve_until_signalled(server, name="admin")


def run(settings: Settings) -> int:
    configure_logging("admin", settings.log_level, fmt=settings.log_format)
    prepare_process(settings)
    tracing.configure("admin")
    return run_service(serve(settings))
