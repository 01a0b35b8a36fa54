"""``hookline delivery``: the delivery service with its health routes, until SIGTERM.

SIGTERM or SIGINT: stop fetching, finish or hand off in-flight deliveries within
``HOOKLINE_SHUTDOWN_GRACE``, commit, exit 0.
"""

from __future__ import annotations

import logging

from services.delivery._service import DeliveryService
from shared.health import HealthServer, Readiness, run_service, stop_signals
from shared.logging import configure_logging
from shared.settings import Settings

log = logging.getLogger("hookline.delivery")


async def serve(settings: Settings) -> int:
    stop = stop_signals()
    readiness = Readiness()
    async with DeliveryService(settings) as service:
        readiness.add("delivery", service.ready)
        async with HealthServer(
            readiness, host=settings.host, port=settings.delivery_port
        ) as health:
            log.info("delivery service started", extra={"port": settings.delivery_port})
            await health.until(stop)
            log.info("delivery service stopping")
            await service.shutdown()
    log.info("delivery service stopped")
    return 0


def run(settings: Settings) -> int:
    configure_logging("delivery", settings.log_level, fmt=settings.log_format)
    return run_service(serve(settings))
