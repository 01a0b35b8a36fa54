"""Topic settings changed under a running test, and a due delivery to write about."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.delivery._codec import Due


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
