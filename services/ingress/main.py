"""``hookline ingress``: the public app and the admin app, two uvicorn servers, one loop.

Lifecycle: both servers start (each runs its app's lifespan); SIGTERM or SIGINT
sets both to exit: they stop accepting connections, let in-flight requests
finish, run the lifespans' shutdown (the producer drains), and ``run`` returns
0. If either server fails to start, the other is stopped too and ``run``
returns 1.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import signal

from starlette.types import ASGIApp

from shared.health import QuietServer, quiet_server, run_service
from shared.logging import configure_logging
from shared.settings import Settings

log = logging.getLogger("hookline.ingress")


def _server(app: ASGIApp, settings: Settings, port: int) -> QuietServer:
    return quiet_server(
        app,
        settings.host,
        port,
        http="httptools",
        loop="none",
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        # The app reads X-Forwarded-For itself, from HOOKLINE_TRUSTED_PROXIES only;
        # uvicorn's own rewrite would trust loopback peers behind our back.
        proxy_headers=False,
    )


def _apps(settings: Settings) -> list[tuple[str, ASGIApp, int]]:
    from services.ingress import create_ingress_app

    apps: list[tuple[str, ASGIApp, int]] = [
        ("public", create_ingress_app(settings), settings.ingress_port)
    ]
    try:
        # Imported lazily: the admin app is built in its own package.
        admin = importlib.import_module("services.ingress.admin")
        create_admin_app = admin.create_admin_app
    except (ImportError, AttributeError) as exc:
        log.error("admin API unavailable; serving the public app only", extra={"error": repr(exc)})
    else:
        apps.append(("admin", create_admin_app(settings), settings.admin_port))
    return apps


async def serve(settings: Settings) -> int:
    servers = [(name, _server(app, settings, port)) for name, app, port in _apps(settings)]

    def stop() -> None:
        for _, server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [
        asyncio.create_task(server.serve(), name=f"uvicorn-{name}") for name, server in servers
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()  # one server ended (signal or failed start): the other follows
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    failed = [
        name
        for (name, server), task in zip(servers, tasks, strict=True)
        if not server.started or (task.done() and task.exception() is not None)
    ]
    if failed:
        log.error("ingress stopped after a failure", extra={"servers": failed})
        return 1
    log.info("ingress stopped")
    return 0


def tune_process() -> None:
    """Process-wide settings for a serving ingress.

    Log records stop looking up thread and process names: the JSON lines never
    show them, and a record is made for every request.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def run(settings: Settings) -> int:
    configure_logging("ingress", settings.log_level, fmt=settings.log_format)
    tune_process()
    return run_service(serve(settings))
