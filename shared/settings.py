"""Settings: one plain object, read from ``HOOKLINE_*`` environment variables.

Every long-lived component takes the pieces it needs at construction; nothing
reads the environment behind the caller's back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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

    # Security
    admin_token: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    secret_key: SecretStr | None = None
    secret_grace_period: float = Field(default=24 * 3600, ge=0)
    allow_insecure_urls: bool = False
    allow_private_destinations: bool = False
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Ports
    host: str = "0.0.0.0"
    ingress_port: int = 8080
    admin_port: int = 8081
    dispatcher_port: int = 8082
    delivery_port: int = 8083

    # Ingress
    max_body_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    signature_tolerance: float = Field(default=300.0, gt=0)
    ingress_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="ingress processes sharing the port (SO_REUSEPORT), one producer each",
    )
    ingress_kafka_client: Literal["aiokafka", "librdkafka"] = Field(
        default="aiokafka",
        description="the ingress producer's client library (both acks=all, idempotent)",
    )

    # Dispatcher
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
        return self

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _csv_schedule(cls, value: object) -> object:
        parts = _split_csv(value)
        if isinstance(parts, list):
            return tuple(float(p) for p in parts)
        return parts
