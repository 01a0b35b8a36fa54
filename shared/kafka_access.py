"""Start-time and running checks that Kafka lets this service do its work.

:func:`check_access` connects once with the service's settings and turns every
refusal into one :class:`~shared.kafka_security.KafkaAccessError` whose message
names what to fix: the credential settings, the CA file, the protocol, or the
topic, group or transactional id and the grant it lacks (``hookline acls``).
:class:`AccessWatch` repeats the ACL part while the service runs: an ACL revoked
meanwhile is logged once, the same way, and the service reports not ready.

Nothing here changes the cluster: topics are asked for with the operations the
broker allows on them (Metadata v8, ``include_topic_authorized_operations``),
groups and transactional ids with FindCoordinator, which Kafka authorizes as
Describe on them (Read and Write imply it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Schema, String

from shared.acls import OPERATIONS, Grant, grants
from shared.errors import BrokerUnavailable
from shared.kafka_security import KafkaAccessError, KafkaSecurity
from shared.settings import Settings
from shared.topics import topic_registry

log = logging.getLogger("hookline.kafka.access")

_AUTH_ERRORS = {29: "topic", 30: "group", 53: "transactional id"}
_UNKNOWN_TOPIC = 3


class _MetadataResponse_v8(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            Array(("node_id", Int32), ("host", String()), ("port", Int32), ("rack", String())),
        ),
        ("cluster_id", String()),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("name", String()),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition", Int32),
                        ("leader", Int32),
                        ("leader_epoch", Int32),
                        ("replicas", Array(Int32)),
                        ("isr", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class _MetadataRequest_v8(RequestStruct):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = _MetadataResponse_v8
    SCHEMA = Schema(
        ("topics", Array(String())),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class _TopicOperations(Request[_MetadataRequest_v8]):  # type: ignore[misc]
    """Metadata for ``topics`` with the operations this principal may do on each."""

    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequest_v8]) -> _MetadataRequest_v8:
        return request_struct_class(self._topics, False, False, True)


@dataclass(frozen=True, slots=True)
class Need:
    """One concrete thing the service does: ``operation`` on ``resource`` ``name``."""

    resource: str
    name: str
    operation: str
    grant: Grant


def needs(service: str, settings: Settings, replica: str | None = None) -> list[Need]:
    """The grants of ``service`` made concrete: real topic names, a real transactional id."""
    prefix = settings.topic_prefix
    registry = topic_registry(
        prefix,
        retry_tiers=len(settings.retry_schedule),
        audit_retention_days=settings.audit_retention_days,
    )
    replica = replica or settings.replica_id or socket.gethostname() or "dispatcher"
    out: list[Need] = []
    for g in grants(service, prefix):
        if g.resource == "topic" and g.pattern == "prefixed":
            names = [s.name for s in registry if s.name.startswith(g.name)]
        elif g.resource == "transactional-id" and g.pattern == "prefixed":
            names = [g.name + replica]
        else:
            names = [g.name]
        out += [Need(g.resource, n, op, g) for n in names for op in g.operations]
    return out


def _denied(need: Need, user: str) -> KafkaAccessError:
    g = need.grant
    pattern = " (prefixed)" if g.pattern == "prefixed" else ""
    return KafkaAccessError(
        f"Kafka user {user} is not allowed to {need.operation.lower()} "
        f"{need.resource} {need.name}: grant {need.operation} on {g.resource} "
        f"{g.name}{pattern} to User:{user} (see `hookline acls`)",
        cause="acl",
    )


def _connect_error(exc: BaseException, host: str, port: int, security: KafkaSecurity) -> Exception:
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == 62 or "hostname" in str(exc).lower():
            return KafkaAccessError(
                f"the broker's certificate at {where} does not name {host} "
                f"({exc.verify_message}); connect by a name it carries, or set "
                "HOOKLINE_KAFKA_SSL_CHECK_HOSTNAME=false where that is acceptable",
                cause="tls",
            )
        trusted_by = (
            f"HOOKLINE_KAFKA_SSL_CAFILE={security.cafile}"
            if security.cafile
            else "the system's CA store (set HOOKLINE_KAFKA_SSL_CAFILE)"
        )
        return KafkaAccessError(
            f"the broker's certificate at {where} is not trusted by {trusted_by}: "
            f"{exc.verify_message}",
            cause="tls",
        )
    if isinstance(exc, ssl.SSLError):
        return KafkaAccessError(
            f"the TLS handshake with {where} failed ({exc.reason or exc}): does the listener "
            f"speak {security.protocol}? (HOOKLINE_KAFKA_SECURITY_PROTOCOL)",
            cause="protocol",
        )
    if isinstance(exc, SaslAuthenticationFailed):
        return KafkaAccessError(
            f"Kafka at {where} rejected the credentials for user {security.principal} "
            "(HOOKLINE_KAFKA_SASL_USERNAME / HOOKLINE_KAFKA_SASL_PASSWORD, or their _FILE "
            f"forms; mechanism {security.mechanism})",
            cause="credentials",
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaAccessError(
            f"Kafka at {where} does not offer HOOKLINE_KAFKA_SASL_MECHANISM="
            f"{security.mechanism}: {exc}",
            cause="credentials",
        )
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return BrokerUnavailable(f"cannot reach Kafka at {where}: {exc}")
    # The broker hung up or never answered the first request: a listener that expects
    # another protocol (TLS, SASL) does exactly that.
    return KafkaAccessError(
        f"Kafka at {where} closed the connection or did not answer ({type(exc).__name__}) "
        f"when spoken to with HOOKLINE_KAFKA_SECURITY_PROTOCOL={security.protocol}: does the "
        "listener expect another protocol?",
        cause="protocol",
    )


async def connect(bootstrap: str, security: KafkaSecurity, timeout: float) -> AIOKafkaConnection:
    """One authenticated connection to the first broker that answers; errors mapped."""
    first: Exception | None = None
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        host = host.strip("[]")
        try:
            conn: AIOKafkaConnection = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    client_id="hookline-access-check",
                    request_timeout_ms=int(timeout * 1000),
                    **security.client_options(),
                ),
                timeout,
            )
            return conn
        except (OSError, KafkaError, TimeoutError, ConnectionError) as exc:
            mapped = _connect_error(exc, host, int(port), security)
            if isinstance(mapped, KafkaAccessError):
                raise mapped from exc  # every broker would say the same
            first = first or mapped
    raise first or BrokerUnavailable(f"no Kafka address in {bootstrap!r}")


async def _check(conn: AIOKafkaConnection, wanted: list[Need], user: str) -> None:
    topics = sorted({n.name for n in wanted if n.resource == "topic"})
    allowed: dict[str, tuple[int, int]] = {}
    if topics:
        response: Any = await conn.send(_TopicOperations(topics))
        for code, name, _internal, _parts, ops in response.topics:
            allowed[name] = (code, ops)
    for need in wanted:
        if need.resource == "topic":
            code, ops = allowed.get(need.name, (_UNKNOWN_TOPIC, 0))
            if code == _UNKNOWN_TOPIC:
                raise KafkaAccessError(
                    f"topic {need.name} does not exist: create it with `hookline topics` "
                    "as a user that may create topics",
                    cause="missing-topic",
                )
            if code in _AUTH_ERRORS or not ops & (1 << OPERATIONS[need.operation]):
                raise _denied(need, user)
        elif need.resource in ("group", "transactional-id"):
            kind = 0 if need.resource == "group" else 1
            answer: Any = await conn.send(FindCoordinatorRequest(need.name, kind))
            if answer.error_code in _AUTH_ERRORS:
                raise _denied(need, user)


async def check_access(
    settings: Settings,
    service: str,
    *,
    security: KafkaSecurity | None = None,
    timeout: float = 15.0,
) -> None:
    """Stop a service at start, clearly, when Kafka will not let it do its work.

    Raises :class:`KafkaAccessError` (credentials, TLS trust, protocol, a missing
    ACL or topic) or :class:`BrokerUnavailable`; returns when every grant of the
    service's table holds for its user.
    """
    security = security or KafkaSecurity.from_settings(settings)
    conn = await connect(settings.kafka_bootstrap_servers, security, timeout)
    try:
        await asyncio.wait_for(_check(conn, needs(service, settings), security.principal), timeout)
    finally:
        conn.close()


async def preflight(settings: Settings, service: str, *, timeout: float = 15.0) -> None:
    """Everything a service needs from Kafka, checked before it starts, in the order that
    gives the clearest message: credentials and TLS trust, then the topics (created where
    this user may create them, as the services do), then the service's ACLs."""
    from shared.kafka import ensure_topics

    security = KafkaSecurity.from_settings(settings)
    (await connect(settings.kafka_bootstrap_servers, security, timeout)).close()
    registry = topic_registry(
        settings.topic_prefix,
        partitions=settings.topic_partitions,
        retry_tiers=len(settings.retry_schedule),
        audit_retention_days=settings.audit_retention_days,
    )
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        registry,
        replication_factor=settings.replication_factor,
        security=security,
    )
    await check_access(settings, service, security=security, timeout=timeout)


class AccessWatch:
    """Re-checks the service's ACLs every ``HOOKLINE_KAFKA_ACCESS_CHECK_INTERVAL`` seconds.

    ``ready`` is False from the first refusal until a check passes again; each change
    is logged once (a refusal as an error naming the grant), never a log line per check.
    A broker that does not answer is not an access problem: readiness has other checks.
    """

    def __init__(
        self,
        settings: Settings,
        service: str,
        *,
        security: KafkaSecurity | None = None,
        interval: float | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._security = security or KafkaSecurity.from_settings(settings)
        self._interval = interval or settings.kafka_access_check_interval
        self._task: asyncio.Task[None] | None = None
        self.problem: KafkaAccessError | None = None

    @property
    def ready(self) -> bool:
        return self.problem is None

    async def check_once(self) -> None:
        try:
            await check_access(
                self._settings, self._service, security=self._security, timeout=self._interval
            )
        except KafkaAccessError as exc:
            if self.problem is None or str(self.problem) != str(exc):
                log.error(str(exc), extra={"service": self._service, "cause": exc.cause})
            self.problem = exc
            return
        except (BrokerUnavailable, KafkaError, OSError, TimeoutError):
            return
        if self.problem is not None:
            log.info("Kafka access restored", extra={"service": self._service})
        self.problem = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_once()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"access-watch-{self._service}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
