"""``hookline delivery``: the delivery service with its health routes, until SIGTERM.

Start: ``/readyz`` is served at once, not ready with the reason until the service's
Kafka parts have started, retried with backoff while Kafka does not answer
(:mod:`shared.startup`); a consumer that stops on a failure has every part closed and
started again, in the process. SIGTERM or SIGINT: stop fetching, finish or hand off
in-flight deliveries within ``HOOKLINE_SHUTDOWN_GRACE``, commit, exit 0.

The process is tuned here, in its entry point, and nowhere else (:func:`tuned_process`):
tests and benchmarks that build a ``DeliveryService`` keep their interpreter as it is,
and the benchmark calls the same tuning to measure what production runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

from services.delivery._service import DeliveryService
from shared import tracing
from shared.health import HealthServer, Readiness, Verdict, run_service, stop_signals
from shared.logging import configure_logging
from shared.settings import Settings
from shared.startup import KafkaStartup, close_quietly, prepare_process

log = logging.getLogger("hookline.delivery")

GC_YOUNG_THRESHOLD = 10_000


@contextmanager
def tuned_process() -> Iterator[None]:
    """The garbage collector tuned for a running delivery service; undone on leaving.

    What start-up built (modules, models, the config view) lives as long as the
    service: frozen out of the collector's way, so the collections that every few
    thousand deliveries' garbage triggers do not walk it again and again. And a
    delivery leaves no cyclic garbage behind (the sender cuts the one cycle a response
    makes), so a young-generation collection every 700 allocations only walks the live
    state of the deliveries in flight, again and again: about a tenth of the service's
    CPU at saturation. Every 10,000 keeps memory as flat.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def serve(settings: Settings) -> int:
    stop = stop_signals()
    readiness = Readiness()
    startup = KafkaStartup("delivery")
    startup.register(readiness, secured=settings.kafka_security_protocol != "PLAINTEXT")
    services: list[DeliveryService] = []
    readiness.add(
        "delivery",
        lambda: services[0].readiness() if services else Verdict(False, "not started"),
    )

    async def start(stack: AsyncExitStack) -> None:
        await startup.check_access(settings, stack)
        await startup.watch(settings.kafka_bootstrap_servers, stack)
        services[:] = [await stack.enter_async_context(DeliveryService(settings))]

    async with HealthServer(readiness, host=settings.host, port=settings.delivery_port) as health:
        while not stop.is_set():
            # Served from the start: not ready, with the reason, until Kafka has answered.
            stack = await startup.open(start, stop)
            if stack is None:
                break
            try:
                service = services[0]
                with tuned_process():
                    log.info("delivery service started", extra={"port": settings.delivery_port})
                    stopped = await _until_stopped(service, stop, health)
                    log.info("delivery service stopping")
                    await service.shutdown()
            finally:
                await close_quietly(stack)
            if stopped is None:
                break
            # A consumer that failed for good: every part started again, in this process.
            log.warning("a delivery consumer stopped; starting again", extra={"consumer": stopped})
            startup.restarting(f"restarting after consumer {stopped} stopped")
    log.info("delivery service stopped")
    return 0


async def _until_stopped(
    service: DeliveryService, stop: asyncio.Event, health: HealthServer
) -> str | None:
    """Until SIGTERM (None), or a consumer's stop (its name)."""
    while not stop.is_set() and not health.failed:
        stopped = [loop.name for loop in service.loops if not loop.running]
        if stopped:
            return ", ".join(stopped)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return None


def run(settings: Settings) -> int:
    configure_logging("delivery", settings.log_level, fmt=settings.log_format)
    prepare_process(settings)
    tracing.configure("delivery")
    return run_service(serve(settings))
