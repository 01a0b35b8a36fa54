"""Test helpers that write configuration entities straight to the ``config`` topic.

Services' tests use these instead of the admin API, so each service can be
tested on its own; secrets are encrypted with the test key as the admin API would.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.structs import RecordMetadata

from shared.certificates import check_identity
from shared.cloudevents import encode
from shared.crypto import SecretBox, mask
from shared.entities import (
    ClientCertificate,
    Entity,
    StoredSecret,
    Subscription,
    Webhook,
    Workflow,
)
from shared.kafka import create_producer
from testkit import TEST_SECRET_KEY

BOX = SecretBox(TEST_SECRET_KEY)


def stored_secrets(
    kind: str,
    entity_id: str,
    plain: list[str],
    *,
    expired: list[str] = (),  # type: ignore[assignment]
) -> list[StoredSecret]:
    key = f"{kind}/{entity_id}"
    now = datetime.now(UTC)
    out = [
        StoredSecret(
            ciphertext=BOX.encrypt(s, entity_key=key),
            hint=mask(s),
            created_at=now - timedelta(seconds=len(plain) - i),
        )
        for i, s in enumerate(plain)
    ]
    out += [
        StoredSecret(
            ciphertext=BOX.encrypt(s, entity_key=key),
            hint=mask(s),
            created_at=now - timedelta(days=3),
            expires_at=now - timedelta(days=1),
        )
        for s in expired
    ]
    return out


def webhook(webhook_id: str, *, secrets: Sequence[str] = (), **fields: Any) -> Webhook:
    now = datetime.now(UTC)
    return Webhook(
        id=webhook_id,
        created_at=now,
        updated_at=now,
        secrets=stored_secrets("webhook", webhook_id, list(secrets)),
        **fields,
    )


def subscription(
    subscription_id: str, *, secrets: Sequence[str] = (), **fields: Any
) -> Subscription:
    now = datetime.now(UTC)
    return Subscription(
        id=subscription_id,
        created_at=now,
        updated_at=now,
        secrets=stored_secrets("subscription", subscription_id, list(secrets)),
        **fields,
    )


def client_certificate(subscription_id: str, certificate: str, key: str) -> ClientCertificate:
    """A subscription's client certificate as the admin API stores it (key encrypted)."""
    facts = check_identity(certificate, key)
    entity_key = f"subscription/{subscription_id}#client_certificate"
    return ClientCertificate(
        certificate=certificate,
        key=StoredSecret(
            ciphertext=BOX.encrypt(key, entity_key=entity_key),
            hint="…",
            created_at=datetime.now(UTC),
        ),
        fingerprint=facts.fingerprint,
        subject=facts.subject,
        not_after=facts.not_after,
    )


def workflow(workflow_id: str, **fields: Any) -> Workflow:
    now = datetime.now(UTC)
    return Workflow(id=workflow_id, created_at=now, updated_at=now, **fields)


async def put_entities(bootstrap: str, config_topic: str, *entities: Entity) -> RecordMetadata:
    """Write entities to the config topic; returns the last record's metadata."""
    meta: RecordMetadata | None = None
    async with create_producer(bootstrap) as producer:
        for entity in entities:
            rec = encode(entity, key=entity.key, source="/tests")
            meta = await producer.send_and_wait(
                config_topic, rec.value, key=rec.key, headers=rec.headers
            )
    assert meta is not None
    return meta


async def delete_entity(bootstrap: str, config_topic: str, key: str) -> RecordMetadata:
    async with create_producer(bootstrap) as producer:
        meta: RecordMetadata = await producer.send_and_wait(config_topic, None, key=key.encode())
    return meta
