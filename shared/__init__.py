"""hookline's shared layer: settings, messages, topics, Kafka clients and the config view.

The public surface is re-exported here; modules whose names start with an
underscore are internal.
"""

from shared.cloudevents import Event, KafkaRecord, decode, decode_any, encode
from shared.config_view import ConfigView
from shared.crypto import SecretBox
from shared.deadletter import DeadLetters
from shared.entities import Binding, Subscription, Webhook, Workflow
from shared.errors import (
    BrokerUnavailable,
    ConfigurationError,
    HooklineError,
    InvalidPayload,
    MissingHeader,
    PoisonMessage,
    PublishTimeout,
    UnknownEventType,
)
from shared.kafka import create_consumer, create_producer, ensure_topics
from shared.settings import Settings
from shared.topics import Topics, topic_registry

__all__ = [
    "Binding",
    "BrokerUnavailable",
    "ConfigView",
    "ConfigurationError",
    "DeadLetters",
    "Event",
    "HooklineError",
    "InvalidPayload",
    "KafkaRecord",
    "MissingHeader",
    "PoisonMessage",
    "PublishTimeout",
    "SecretBox",
    "Settings",
    "Subscription",
    "Topics",
    "UnknownEventType",
    "Webhook",
    "Workflow",
    "create_consumer",
    "create_producer",
    "decode",
    "decode_any",
    "encode",
    "ensure_topics",
    "topic_registry",
]
__version__ = "0.1.0"
