"""``hookline dispatcher``: the dispatcher, the chosen engine adapter, and the health routes.

Start: JSON logging; topics checked (created when missing); the config view
read to its end; the dispatcher (and, with ``HOOKLINE_ENGINE=local``, the local
engine) started; ``/healthz``, ``/readyz``, ``/metrics`` served on
``HOOKLINE_DISPATCHER_PORT``. SIGTERM or SIGINT: stop fetching, let the batch in
hand commit its transaction, exit 0. A component that fails (fenced by a newer
instance with the same transactional id, or the broker lost for good) makes the
process exit 1 so its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from shared import tracing
from shared.config_view import ConfigView
from shared.health import HealthServer, Readiness, run_service, stop_signals
from shared.kafka import ensure_topics
from shared.logging import configure_logging
from shared.settings import Settings
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
    tracing.configure("dispatcher")
    return run_service(_main(settings))


async def _main(settings: Settings) -> int:
    bootstrap = settings.kafka_bootstrap_servers
    topics = topic_registry(
        settings.topic_prefix,
        partitions=settings.topic_partitions,
        retry_tiers=len(settings.retry_schedule),
    )
    await ensure_topics(bootstrap, topics, replication_factor=settings.replication_factor)
    stop = stop_signals()
    replica = replica_id(settings)
    readiness = Readiness()
    async with ConfigView(bootstrap, topics.config) as view:
        readiness.add("config", lambda: view.ready)
        await view.wait_ready()
        dispatcher = Dispatcher(
            bootstrap, topics, view, transactional_id=f"{topics.prefix}dispatcher-{replica}"
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
        health = HealthServer(readiness, host=settings.host, port=settings.dispatcher_port)
        readiness.add("dispatcher", lambda: dispatcher.running)
        readiness.add("engine", lambda: engine.running)
        async with dispatcher, engine, health:
            log.info(
                "dispatcher started",
                extra={
                    "engine": settings.engine,
                    "replica": replica,
                    "port": settings.dispatcher_port,
                },
            )
            while not stop.is_set() and dispatcher.running and engine.running and not health.failed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
            log.info("dispatcher stopping; finishing the transaction in hand")
            dispatcher.stop()
            engine.stop()
        failure = dispatcher.failure or engine.failure
    if failure is not None:
        log.error("dispatcher stopped after a failure", extra={"error": repr(failure)})
        return 1
    log.info("dispatcher stopped")
    return 0
