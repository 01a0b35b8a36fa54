"""``hookline dev``: everything on one machine.

For now: the local broker (unless a bootstrap server is set) and the topics.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from shared.kafka import ensure_topics
from shared.localkafka import LocalKafka
from shared.settings import Settings
from shared.topics import topic_registry


def main(args: argparse.Namespace, settings: Settings) -> int:
    broker = None
    if "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        broker = LocalKafka()
        bootstrap = broker.start()
        print(f"kafka     {bootstrap} (local broker, data in {broker.data_dir})")
    else:
        bootstrap = settings.kafka_bootstrap_servers
        print(f"kafka     {bootstrap}")
    topics = topic_registry(
        settings.topic_prefix,
        partitions=settings.topic_partitions,
        retry_tiers=len(settings.retry_schedule),
    )
    asyncio.run(ensure_topics(bootstrap, topics))
    print("topics    ready; press Ctrl-C to stop")
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    signal.sigwait(stop_signals)
    if broker is not None:
        broker.stop()
        print("kafka     stopped")
    return 0
