"""``hookline dispatcher``: the dispatcher, the chosen engine adapter, and the health routes.

Start: JSON logging; ``/healthz``, ``/readyz``, ``/metrics`` served on
``HOOKLINE_DISPATCHER_PORT`` at once (not ready, with the reason, until what follows
is done); then, retried with backoff while Kafka does not answer
(:mod:`shared.startup`): topics checked (created when missing), the service's grants
checked on a secured cluster, the config view read to its end, the dispatcher (and,
with ``HOOKLINE_ENGINE=local``, the local engine) started. SIGTERM or SIGINT: stop fetching, let the batch in
hand commit its transaction, exit 0. Fenced by a newer instance with the same
transactional id, the process exits 1; a Kafka client that fails otherwise has every
part closed and started again in the process, not ready meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from aiokafka.errors import ProducerFenced

from shared import tracing
from shared.config_view import ConfigView
from shared.health import HealthServer, Readiness, run_service, stop_signals
from shared.kafka import ensure_topics
from shared.logging import configure_logging
from shared.settings import Settings
from shared.startup import KafkaStartup, close_quietly, prepare_process
from shared.topics import topic_registry

from ._dispatcher import Dispatcher
from ._engine import KafkaEngine, LocalEngine
from ._nodes import NodePolicy

log = logging.getLogger("services.dispatcher")


def replica_id(settings: Settings) -> str:
    """Stable per replica: a restarted process fences its predecessor's open transaction.

    ``HOOKLINE_REPLICA_ID`` wins, so replicas that share a host (tests, ``hookline
    dev``) do not fence each other; otherwise the host name (a StatefulSet's pod name).
    """
    return settings.replica_id or socket.gethostname() or "dispatcher"


def run(settings: Settings) -> int:
    configure_logging("dispatcher", settings.log_level, fmt=settings.log_format)
    prepare_process(settings)
    tracing.configure("dispatcher")
    return run_service(_main(settings))


async def _main(settings: Settings) -> int:
    bootstrap = settings.kafka_bootstrap_servers
    topics = topic_registry(
        settings.topic_prefix,
        partitions=settings.topic_partitions,
        retry_tiers=len(settings.retry_schedule),
    )
    stop = stop_signals()
    replica = replica_id(settings)
    readiness = Readiness()
    startup = KafkaStartup("dispatcher")
    startup.register(readiness, secured=settings.kafka_security_protocol != "PLAINTEXT")
    parts: dict[str, Any] = {}
    readiness.add("config", lambda: "view" in parts and parts["view"].ready)
    readiness.add("dispatcher", lambda: "dispatcher" in parts and parts["dispatcher"].running)
    readiness.add("engine", lambda: "engine" in parts and parts["engine"].running)

    async def start(stack: contextlib.AsyncExitStack) -> None:
        """Every Kafka part, in order; an attempt that fails is retried from the top."""
        parts.clear()
        await ensure_topics(bootstrap, topics, replication_factor=settings.replication_factor)
        await startup.check_access(settings, stack)
        view = await stack.enter_async_context(ConfigView(bootstrap, topics.config))
        await view.wait_ready()
        dispatcher = Dispatcher(
            bootstrap,
            topics,
            view,
            transactional_id=f"{topics.prefix}dispatcher-{replica}",
            dedupe_window=settings.dedupe_window,
            # Expired entries leave memory within a quarter of the window (hourly at most).
            expire_every=min(3600.0, settings.dedupe_window / 4),
        )
        engine: KafkaEngine | LocalEngine = KafkaEngine()
        if settings.engine == "local":
            engine = LocalEngine(
                bootstrap,
                topics,
                view,
                transactional_id=f"{topics.prefix}engine-{replica}",
                policy=NodePolicy(
                    http_timeout=settings.request_timeout,
                    allow_insecure_urls=settings.allow_insecure_urls,
                    allow_private_destinations=settings.allow_private_destinations,
                ),
            )
        await stack.enter_async_context(dispatcher)
        await stack.enter_async_context(engine)
        await startup.watch(bootstrap, stack)
        parts.update(view=view, dispatcher=dispatcher, engine=engine)

    health = HealthServer(readiness, host=settings.host, port=settings.dispatcher_port)
    async with health:
        while True:
            # Served from the start: not ready, with the reason, until Kafka has answered.
            stack = await startup.open(start, stop)
            if stack is None:
                log.info("dispatcher stopped before Kafka answered")
                return 0
            failure = await _serve(stack, parts, stop, health, settings, replica)
            if failure is None or stop.is_set() or health.failed:
                break
            if isinstance(failure, ProducerFenced):
                break  # a newer instance with this replica id runs: it is the one to keep
            # A client that failed for good (aiokafka's transactional producer cannot
            # recover from a connection lost at the wrong moment): start them all again,
            # in this process, rather than wait for a supervisor.
            log.warning(
                "dispatcher's Kafka clients failed; starting them again",
                extra={"error": repr(failure)},
            )
            startup.restarting(f"restarting after {failure!r}")
    if failure is not None:
        log.error("dispatcher stopped after a failure", extra={"error": repr(failure)})
        return 1
    log.info("dispatcher stopped")
    return 0


async def _serve(
    stack: contextlib.AsyncExitStack,
    parts: dict[str, Any],
    stop: asyncio.Event,
    health: HealthServer,
    settings: Settings,
    replica: str,
) -> BaseException | None:
    """Run the started parts until SIGTERM or a failure; close them; the failure or None."""
    dispatcher, engine = parts["dispatcher"], parts["engine"]
    log.info(
        "dispatcher started",
        extra={"engine": settings.engine, "replica": replica, "port": settings.dispatcher_port},
    )
    try:
        while not stop.is_set() and dispatcher.running and engine.running and not health.failed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        log.info("dispatcher stopping; finishing the transaction in hand")
        dispatcher.stop()
        engine.stop()
    finally:
        await close_quietly(stack)
    failure: BaseException | None = dispatcher.failure or engine.failure
    return failure
