"""Settings: one plain object, read from ``HOOKLINE_*`` environment variables.

Every long-lived component takes the pieces it needs at construction; nothing
reads the environment behind the caller's back.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
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

    # Dispatcher
    engine: Literal["kafka", "local"] = "kafka"
    replica_id: str | None = Field(
        default=None,
        description="stable per replica (transactional ids); the host name when unset",
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

    # Logging
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = Field(
        default="json", description="json lines for machines; text for a terminal (hookline dev)"
    )

    @field_validator("admin_token", "trusted_proxies", mode="before")
    @classmethod
    def _csv_list(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _csv_schedule(cls, value: object) -> object:
        parts = _split_csv(value)
        if isinstance(parts, list):
            return tuple(float(p) for p in parts)
        return parts
