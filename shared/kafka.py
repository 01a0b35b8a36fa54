"""Kafka clients made one way: producer, consumer and admin factories, and topic creation.

Producers are idempotent with ``acks=all``; consumers never auto-commit (the
services commit offsets last, after the work is settled). Every client gets the
Kafka security in force (:mod:`shared.kafka_security`): the one passed as
``security``, else the one installed for the context, else plaintext.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from shared.errors import BrokerUnavailable, ConfigurationError
from shared.kafka_security import KafkaSecurity, current_security
from shared.topics import Topics, TopicSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroupMembership:
    """How this process's group consumers join their groups (see docs/replicated-cluster.md).

    ``instance_id`` (the replica id) makes each member static (KIP-345): a replica that
    restarts under the same id takes its partitions back the moment it rejoins, instead
    of after the dead member's session times out, and without a rebalance. Static
    members do not leave on close, so a replica stopped for good holds its partitions
    idle for ``session_timeout_ms`` (the broker's minimum is 6 s). Without an id, members
    are dynamic, as in tests that run several in one process.
    """

    instance_id: str | None = None
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 2_000

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
        }
        if self.instance_id:
            out["group_instance_id"] = self.instance_id
        return out


_membership: contextvars.ContextVar[GroupMembership | None] = contextvars.ContextVar(
    "hookline_group_membership", default=None
)


def install_membership(membership: GroupMembership) -> None:
    """For a service's entry point: its group consumers join with ``membership``. One
    process holds one member per group (each of its groups is a different one)."""
    _membership.set(membership)


def kafka_client_options(security: KafkaSecurity | None = None) -> dict[str, Any]:
    """The security options of a client: ``security``, else the one in force."""
    return (security or current_security()).client_options()


def create_admin(
    bootstrap_servers: str,
    *,
    client_id: str = "hookline-admin",
    security: KafkaSecurity | None = None,
    **overrides: Any,
) -> AIOKafkaAdminClient:
    """An admin client (not yet started) with the security in force."""
    options: dict[str, Any] = {
        **kafka_client_options(security),
        "bootstrap_servers": bootstrap_servers,
        "client_id": client_id,
    }
    options.update(overrides)
    return AIOKafkaAdminClient(**options)


def create_producer(
    bootstrap_servers: str,
    *,
    client_id: str = "hookline",
    transactional_id: str | None = None,
    linger_ms: int = 2,
    request_timeout_ms: int = 30_000,
    security: KafkaSecurity | None = None,
    **overrides: Any,
) -> AIOKafkaProducer:
    """An idempotent, ``acks=all``, lz4-compressed producer (not yet started)."""
    options: dict[str, Any] = {
        **kafka_client_options(security),
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
    security: KafkaSecurity | None = None,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A consumer that commits nothing by itself and reads only committed records."""
    options: dict[str, Any] = {
        **kafka_client_options(security),
        "bootstrap_servers": bootstrap_servers,
        "client_id": client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": auto_offset_reset,
        "isolation_level": "read_committed" if read_committed else "read_uncommitted",
        "max_partition_fetch_bytes": 32 * 1024 * 1024,
        "fetch_max_bytes": 64 * 1024 * 1024,
    }
    if group_id is not None:
        options.update((_membership.get() or GroupMembership()).options())
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: list[str]
    existing: list[str]
    differences: list[str]
    #: topics this client may neither see nor create: another service's, under least privilege
    skipped: list[str] = field(default_factory=list)


# Kafka's error codes that mean "not allowed", in a CreateTopics or Metadata answer.
_TOPIC_AUTHORIZATION_FAILED = TopicAuthorizationFailedError.errno
_CLUSTER_AUTHORIZATION_FAILED = ClusterAuthorizationFailedError.errno


async def ensure_topics(
    bootstrap_servers: str,
    topics: Topics | list[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
    security: KafkaSecurity | None = None,
) -> TopicReport:
    """Create missing topics; report (never change) settings that differ from the registry.

    Under least privilege a service may not create topics (an operator runs ``hookline
    topics`` with a user that may): then a missing topic it may see fails clearly, and
    topics it may not even see (another service's) are skipped.
    """
    specs = list(topics)
    admin = create_admin(bootstrap_servers, client_id="hookline-admin", security=security)
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (TimeoutError, KafkaError) as exc:
        await admin.close()
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        present = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in present]
        created: list[str] = []
        skipped: list[str] = []
        if missing:
            denied = await _create(admin, missing, replication_factor)
            skipped, raced = await _not_created(admin, denied, security)
            created = [s.name for s in missing if s.name not in denied]
            await _wait_for_metadata(admin, created, timeout)
            present.update(raced)
        existing = [s for s in specs if s.name in present]
        differences = await _differences(admin, existing) if existing else []
        return TopicReport(created, [s.name for s in existing], differences, skipped)
    finally:
        await admin.close()


async def _create(
    admin: AIOKafkaAdminClient, missing: list[TopicSpec], replication_factor: int
) -> set[str]:
    """Create ``missing``; return the names this client was not allowed to create."""
    new = [
        NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.configs) for s in missing
    ]
    response = await admin.create_topics(new)
    denied: set[str] = set()
    for name, code, *rest in response.topic_errors:
        if code in (_TOPIC_AUTHORIZATION_FAILED, _CLUSTER_AUTHORIZATION_FAILED):
            denied.add(name)
        # Another process may win the race (TOPIC_ALREADY_EXISTS): the metadata wait holds.
        elif code not in (0, TopicAlreadyExistsError.errno):
            message = rest[0] if rest and rest[0] else f"error code {code}"
            raise ConfigurationError(f"Kafka would not create topic {name}: {message}")
    return denied


async def _not_created(
    admin: AIOKafkaAdminClient, denied: set[str], security: KafkaSecurity | None
) -> tuple[list[str], list[str]]:
    """Split topics we may not create into (invisible to us, created by someone else meanwhile).

    A topic we may describe but that does not exist is one we need: that is fatal."""
    if not denied:
        return [], []
    skipped: list[str] = []
    raced: list[str] = []
    absent: list[str] = []
    for entry in await admin.describe_topics(sorted(denied)):
        code = entry.get("error_code", 0)
        if code == _TOPIC_AUTHORIZATION_FAILED:
            skipped.append(entry["topic"])
        elif code == 0:
            raced.append(entry["topic"])
        else:
            absent.append(entry["topic"])
    if absent:
        from shared.kafka_security import KafkaAccessError

        user = (security or current_security()).principal
        names = ", ".join(sorted(absent))
        what = (
            f"topics {names} do not exist" if len(absent) > 1 else f"topic {names} does not exist"
        )
        raise KafkaAccessError(
            f"{what} and Kafka user {user} may not create topics: create them with "
            "`hookline topics` as a user that may (see docs/kafka.md)",
            cause="missing-topic",
        )
    return skipped, raced


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


async def wait_for_broker(
    bootstrap_servers: str, timeout: float = 30.0, *, security: KafkaSecurity | None = None
) -> dict[str, Any]:
    """Block until the cluster answers a metadata request; return its description."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Exception | None = None
    while loop.time() < deadline:
        admin = create_admin(
            bootstrap_servers,
            request_timeout_ms=3000,
            client_id="hookline-probe",
            security=security,
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
    admin = create_admin(bootstrap_servers, client_id="hookline-meta")
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
