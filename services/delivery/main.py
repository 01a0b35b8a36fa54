"""``hookline delivery``: the delivery service with its health routes, until SIGTERM.

SIGTERM or SIGINT: stop fetching, finish or hand off in-flight deliveries within
``HOOKLINE_SHUTDOWN_GRACE``, commit, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

import uvicorn
from starlette.applications import Starlette

from services.delivery._service import DeliveryService
from shared.health import Readiness, health_routes
from shared.logging import configure_logging
from shared.settings import Settings

log = logging.getLogger("hookline.delivery")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service owns SIGTERM: it drains deliveries before the server goes.
        yield


async def serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    readiness = Readiness()
    async with DeliveryService(settings) as service:
        readiness.add("delivery", service.ready)
        app = Starlette(routes=health_routes(readiness))
        server = _Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.delivery_port,
                log_config=None,
                lifespan="off",
                access_log=False,
            )
        )
        server_task = asyncio.create_task(server.serve())
        log.info("delivery service started", extra={"port": settings.delivery_port})
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({server_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        log.info("delivery service stopping")
        await service.shutdown()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await server_task
        stopped.cancel()
    log.info("delivery service stopped")
    return 0


def run(settings: Settings) -> int:
    configure_logging("delivery", settings.log_level, fmt=settings.log_format)
    factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows only
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(settings))
