"""Settings: one plain object, read from ``HOOKLINE_*`` environment variables.

Every long-lived component takes the pieces it needs at construction; nothing
reads the environment behind the caller's back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The Standard Webhooks schedule: the gaps between attempts, in seconds
# (the first attempt is immediate): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
STANDARD_RETRY_SCHEDULE: tuple[float, ...] = (
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """All of hookline's settings; see the configuration table in the README."""

    model_config = SettingsConfigDict(env_prefix="HOOKLINE_", extra="ignore", frozen=True)

    # Kafka
    kafka_bootstrap_servers: str = "localhost:9092"
    topic_prefix: str = "hookline."
    topic_partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    publish_timeout: float = Field(default=5.0, gt=0, description="seconds to wait for acks=all")

    # Kafka client security (docs/kafka.md). A ``…_FILE`` setting names a file holding the
    # value (a mounted Kubernetes secret); it is read once, at start.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = (
        "SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_username_file: Path | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_sasl_oauth_token_file: Path | None = Field(
        default=None, description="OAUTHBEARER: a file holding the token, re-read when it changes"
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM CA bundle for the brokers; the system's when unset"
    )
    kafka_ssl_certfile: Path | None = Field(default=None, description="mutual TLS: our certificate")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="mutual TLS: its key")
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_access_check_interval: float = Field(
        default=30.0, gt=0, description="seconds between re-checks of this service's ACLs"
    )
    # Group membership and outages (docs/replicated-cluster.md)
    kafka_session_timeout: float = Field(
        default=10.0,
        ge=6,
        le=300,
        description="seconds a silent group member keeps its partitions (broker minimum: 6)",
    )
    kafka_static_membership: bool = Field(
        default=True,
        description="join consumer groups as the replica id (KIP-345) when one is set",
    )
    outage_log_interval: float = Field(
        default=30.0, gt=0, description="seconds between repeated log lines of a Kafka outage"
    )

    # Security
    admin_token: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    admin_tokens_file: Path | None = Field(
        default=None,
        description="YAML list of {name, role, sha256}: the named admin tokens; re-read on change",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="comma-separated keys: the first encrypts, every one decrypts (rotation)",
    )
    audit_retention_days: float = Field(
        default=365, gt=0, description="how long the audit topic keeps its entries"
    )
    secret_grace_period: float = Field(default=24 * 3600, ge=0)
    allow_insecure_urls: bool = False
    allow_private_destinations: bool = False
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    env: Literal["production", "development"] = Field(
        default="production",
        description="development (hookline dev) drops the Secure flag of the console's cookies "
        "so plain http works off loopback",
    )
    console_session_hours: float = Field(default=8.0, gt=0, le=24 * 7)

    # Ports
    host: str = "0.0.0.0"
    ingress_port: int = 8080
    ingress_internal_port: int = Field(
        default=8084, description="the ingress' /healthz, /readyz and /metrics; never public"
    )
    admin_port: int = 8081
    dispatcher_port: int = 8082
    delivery_port: int = 8083

    # Ingress
    max_body_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    signature_tolerance: float = Field(default=300.0, gt=0)
    # HTTPS on the public port (docs/ingress.md): PEM files, re-read when they change.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # The public port against slow and idle clients: seconds for a request's headers to
    # arrive, for its body to follow them, for an idle keep-alive connection to stay open;
    # the connections one process keeps open (503 past it).
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=10.0, gt=0)
    keepalive_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=2048, ge=1)
    ingress_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="ingress processes sharing the port (SO_REUSEPORT), one producer each",
    )

    # Dispatcher
    dedupe_window: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="seconds a started run is remembered against provider redeliveries "
        "(keep it at least the inbound topic's retention); the dispatcher's memory grows "
        "with the runs started within it",
    )
    engine: Literal["kafka", "local"] = "kafka"
    replica_id: str | None = Field(
        default=None,
        description="stable per replica (transactional ids); the host name when unset",
    )

    # Admin: its view of the operations data (rebuilt from Kafka when missing)
    admin_view_path: Path | None = Field(
        default=None,
        description="the view's SQLite file; <cache_dir>/admin/<topic prefix>view.sqlite3 "
        "when unset",
    )
    subscription_metrics: bool = Field(
        default=False,
        description="per-subscription health series on /metrics (one label per subscription)",
    )

    # Delivery
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = STANDARD_RETRY_SCHEDULE
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    request_timeout: float = Field(default=10.0, gt=0)
    connect_timeout: float = Field(default=3.0, gt=0)
    max_in_flight: int = Field(default=256, ge=1)
    max_in_flight_per_subscription: int = Field(default=16, ge=1)
    max_unsettled_per_partition: int = Field(default=1000, ge=1)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_cooldown: float = Field(default=30.0, gt=0)
    disable_after_failing_for: float = Field(default=5 * 24 * 3600, gt=0)
    shutdown_grace: float = Field(default=20.0, gt=0)
    max_unsettled_age: float = Field(
        default=60.0,
        gt=0,
        description="seconds a delivery partition may hold a record unsettled and stay ready",
    )
    # Per-subscription delivery controls: the bounds a subscription's own retry schedule
    # and timeout are held to (its gaps to the longest gap of ``retry_schedule``, the
    # longest tier; docs/delivery.md "Per-subscription controls").
    max_retry_attempts: int = Field(
        default=20, ge=1, description="attempts in all a subscription's own schedule may make"
    )
    max_request_timeout: float = Field(
        default=30.0, gt=0, description="the longest request timeout a subscription may set"
    )
    # Egress: deliveries through an HTTP CONNECT proxy (receivers allowlist its address);
    # the destination policy is applied before the CONNECT, on the address it names.
    egress_proxy: str | None = Field(
        default=None, description="http://host:port of an HTTP CONNECT proxy for deliveries"
    )
    delivery_ca_file: Path | None = Field(
        default=None,
        description="PEM bundle of the CAs receivers' certificates are checked against "
        "(the system's when unset)",
    )

    # Local tooling (``hookline kafka``, ``hookline dev``): the broker's jars and data,
    # the development credentials. Relative to the working directory.
    cache_dir: Path = Path(".cache")

    # Logging
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = Field(
        default="json", description="json lines for machines; text for a terminal (hookline dev)"
    )

    @field_validator("admin_token", "trusted_proxies", mode="before")
    @classmethod
    def _csv_list(cls, value: object) -> object:
        return _split_csv(value)

    @model_validator(mode="after")
    def _one_source_each(self) -> Settings:
        pairs = (
            ("kafka_sasl_username", self.kafka_sasl_username, self.kafka_sasl_username_file),
            ("kafka_sasl_password", self.kafka_sasl_password, self.kafka_sasl_password_file),
        )
        for name, value, file in pairs:
            if value is not None and file is not None:
                upper = f"HOOKLINE_{name.upper()}"
                raise ValueError(f"set {upper} or {upper}_FILE, not both")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both HOOKLINE_TLS_CERTFILE and HOOKLINE_TLS_KEYFILE, or neither")
        return self

    @property
    def max_retry_gap(self) -> float:
        """The longest gap a subscription's own schedule may hold: the longest global gap.

        A retry waits on the tier whose gap is the shortest not below its own; a gap past
        the longest tier's would hold that tier's partitions past their own gap.
        """
        return max(self.retry_schedule, default=0.0)

    @field_validator("egress_proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("HOOKLINE_EGRESS_PROXY must be http://host:port")
        if parts.username or parts.password:
            raise ValueError("HOOKLINE_EGRESS_PROXY takes no credentials")
        return value.strip()

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _csv_schedule(cls, value: object) -> object:
        parts = _split_csv(value)
        if isinstance(parts, list):
            return tuple(float(p) for p in parts)
        return parts
