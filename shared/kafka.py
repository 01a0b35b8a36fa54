"""Kafka clients made one way: producer and consumer factories, and topic creation.

Producers are idempotent with ``acks=all``; consumers never auto-commit (the
services commit offsets last, after the work is settled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.errors import BrokerUnavailable
from shared.topics import Topics, TopicSpec

log = logging.getLogger(__name__)


def create_producer(
    bootstrap_servers: str,
    *,
    client_id: str = "hookline",
    transactional_id: str | None = None,
    linger_ms: int = 2,
    request_timeout_ms: int = 30_000,
    **overrides: Any,
) -> AIOKafkaProducer:
    """An idempotent, ``acks=all``, lz4-compressed producer (not yet started)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "lz4",
        "linger_ms": linger_ms,
        "request_timeout_ms": request_timeout_ms,
        "max_request_size": 32 * 1024 * 1024,
    }
    if transactional_id is not None:
        options["transactional_id"] = transactional_id
    options.update(overrides)
    return AIOKafkaProducer(**options)


def create_consumer(
    bootstrap_servers: str,
    *topics: str,
    group_id: str | None,
    client_id: str = "hookline",
    read_committed: bool = True,
    auto_offset_reset: str = "earliest",
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A consumer that commits nothing by itself and reads only committed records."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "client_id": client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": auto_offset_reset,
        "isolation_level": "read_committed" if read_committed else "read_uncommitted",
        "max_partition_fetch_bytes": 32 * 1024 * 1024,
        "fetch_max_bytes": 64 * 1024 * 1024,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: list[str]
    existing: list[str]
    differences: list[str]


async def ensure_topics(
    bootstrap_servers: str,
    topics: Topics | list[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> TopicReport:
    """Create missing topics; report (never change) settings that differ from the registry."""
    specs = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="hookline-admin")
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (TimeoutError, KafkaError) as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        present = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in present]
        created: list[str] = []
        if missing:
            new = [
                NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.configs)
                for s in missing
            ]
            # Another process may win the race; the metadata wait below still holds.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            created = [s.name for s in missing]
            await _wait_for_metadata(admin, created, timeout)
        existing = [s for s in specs if s.name in present]
        differences = await _differences(admin, existing) if existing else []
        return TopicReport(created, [s.name for s in existing], differences)
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        described = await admin.describe_topics(names)
        if all(d.get("error_code", 0) == 0 and d.get("partitions") for d in described):
            return
        await asyncio.sleep(0.1)
    raise BrokerUnavailable(f"topics not ready after {timeout}s: {names}")


async def _differences(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    out: list[str] = []
    described = {d["topic"]: d for d in await admin.describe_topics([s.name for s in specs])}
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs]
    actual: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            # (error_code, error_message, resource_type, resource_name, config_entries)
            name, entries = resource[3], resource[4]
            actual[name] = {entry[0]: entry[1] for entry in entries}
    for s in specs:
        parts = len(described.get(s.name, {}).get("partitions", []))
        if parts != s.partitions:
            out.append(f"{s.name}: partitions {parts}, registry says {s.partitions}")
        for key, want in s.configs.items():
            have = actual.get(s.name, {}).get(key)
            if have is not None and have != want:
                out.append(f"{s.name}: {key}={have}, registry says {want}")
    return out


async def wait_for_broker(bootstrap_servers: str, timeout: float = 30.0) -> dict[str, Any]:
    """Block until the cluster answers a metadata request; return its description."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Exception | None = None
    while loop.time() < deadline:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=3000, client_id="hookline-probe"
        )
        try:
            await asyncio.wait_for(admin.start(), 5)
            info: dict[str, Any] = await asyncio.wait_for(admin.describe_cluster(), 5)
            return info
        except (TimeoutError, KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.3)
        finally:
            await admin.close()
    raise BrokerUnavailable(f"no Kafka at {bootstrap_servers} after {timeout}s: {last}")


async def topic_partitions(bootstrap_servers: str, topic: str, timeout: float = 10.0) -> list[int]:
    """The partition numbers of ``topic`` (empty when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="hookline-meta")
    try:
        await asyncio.wait_for(admin.start(), timeout)
        described = await admin.describe_topics([topic])
    except (TimeoutError, KafkaError) as exc:
        raise BrokerUnavailable(f"cannot describe {topic}: {exc}") from exc
    finally:
        await admin.close()
    for entry in described:
        if entry.get("topic") == topic and entry.get("error_code", 0) == 0:
            return sorted(p["partition"] for p in entry.get("partitions", []))
    return []
