"""One exception tree for hookline.

::

    HooklineError
    ├── ConfigurationError        settings or environment unusable (missing Java, bad key)
    ├── BrokerUnavailable         Kafka did not answer in time
    │   └── PublishTimeout        a write was not acknowledged within its deadline
    ├── PoisonMessage             a record that cannot be parsed or validated
    │   ├── MissingHeader         a required ``ce_*`` header is absent
    │   ├── UnknownEventType      ``ce_type`` names no known message
    │   └── InvalidPayload        the value is not JSON or fails its schema
    ├── SecretError               a secret cannot be decrypted (wrong key, tampered)
    └── EntityError               admin API failures with an HTTP meaning
        ├── NotFound              404
        ├── VersionConflict       412 (stale If-Match)
        └── AlreadyExists         409
"""

from __future__ import annotations


class HooklineError(Exception):
    """The root of every error hookline raises on purpose."""


class ConfigurationError(HooklineError):
    """Settings or the environment make the requested action impossible."""


class BrokerUnavailable(HooklineError):
    """Kafka did not answer in time."""


class PublishTimeout(BrokerUnavailable):
    """A produce was not acknowledged (acks=all) within its deadline."""


class PoisonMessage(HooklineError):
    """A record that cannot be parsed or validated; it belongs in the dead-letter topic."""

    reason_code = "poison"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MissingHeader(PoisonMessage):
    reason_code = "missing_header"


class UnknownEventType(PoisonMessage):
    reason_code = "unknown_type"


class InvalidPayload(PoisonMessage):
    reason_code = "invalid_payload"


class SecretError(HooklineError):
    """A stored secret could not be decrypted with the configured key."""


class EntityError(HooklineError):
    status_code = 400


class NotFound(EntityError):
    status_code = 404


class VersionConflict(EntityError):
    status_code = 412


class AlreadyExists(EntityError):
    status_code = 409
