"""Topic settings changed under a running test, and a due delivery to write about."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError

from services.delivery._codec import Due
from shared.kafka import create_producer
from testkit.kafka import wait_until


async def set_topic_config(bootstrap: str, topic: str, **configs: str) -> None:
    """Set ``configs`` on ``topic`` (dots spelled as underscores: max_message_bytes)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    topic,
                    configs={k.replace("_", "."): v for k, v in configs.items()},
                )
            ]
        )
    finally:
        await admin.close()


async def refuse_batches(bootstrap: str, topic: str, max_bytes: int = 64) -> None:
    """Make the broker refuse every batch on ``topic`` larger than ``max_bytes`` (all of
    them, at 64), and wait until it does: the change reaches the broker a moment later."""
    await set_topic_config(bootstrap, topic, max_message_bytes=str(max_bytes))
    async with create_producer(
        bootstrap, enable_idempotence=False, compression_type=None, acks=1
    ) as probe:

        async def refused() -> bool:
            try:
                await probe.send_and_wait(topic, os.urandom(1024), partition=0)
            except MessageSizeTooLargeError:
                return True
            return False

        await wait_until(refused, timeout=10, message=f"{topic} refusing large batches")


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def a_due(source_topic: str = "events", offset: int = 7, subscription_id: str = "sub") -> Due:
    now = datetime.now(UTC)
    return Due(
        "dlv_test",
        "msg_test",
        subscription_id,
        "workflow.completed",
        "wf-1",
        (source_topic, 0, offset),
        '{"type":"workflow.completed","timestamp":"t","data":{}}',
        1,
        now,
        now,
    )
