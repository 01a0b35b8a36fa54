"""The local launcher: idempotent start, status, stop, and data that survives a restart."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from localkafka import LocalKafka
from shared.kafka import create_producer
from testkit import free_port_pair
from testkit.kafka import read_topic
from tests.conftest import BrokerHandle


@pytest.mark.kafka
@pytest.mark.slow
def test_start_twice_status_stop_start_keeps_data(broker: BrokerHandle) -> None:
    if broker.local is None:
        pytest.skip("the session broker is not the local launcher")
    data = Path(tempfile.mkdtemp(prefix="hookline-launcher-"))
    kafka = LocalKafka(port=free_port_pair(), data_dir=data)
    try:
        first = kafka.start()
        pid = kafka.status().pid
        assert kafka.start() == first, "a second start answers with the same broker"
        status = kafka.status()
        assert status.running and status.pid == pid
        assert status.version and status.version.startswith("4.")

        asyncio.run(_write(first, "survivor", b"before-stop"))
        assert kafka.stop() is True
        assert not kafka.status().running
        assert kafka.stop() is False, "stopping a stopped broker is harmless"

        kafka.start()
        records = asyncio.run(read_topic(first, "survivor", min_count=1, timeout=20))
        assert [r.value for r in records] == [b"before-stop"]
    finally:
        kafka.stop()
        shutil.rmtree(data, ignore_errors=True)


async def _write(bootstrap: str, topic: str, value: bytes) -> None:
    from shared.kafka import ensure_topics
    from shared.topics import TopicSpec

    await ensure_topics(bootstrap, [TopicSpec("survivor", topic, 1, "delete", None)])
    async with create_producer(bootstrap) as producer:
        await producer.send_and_wait(topic, value)


def test_cluster_ids_never_look_like_an_option() -> None:
    from localkafka.launcher import _kafka_cluster_id

    ids = [_kafka_cluster_id() for _ in range(2000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids)
