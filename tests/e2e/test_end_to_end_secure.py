"""The end-to-end flow on a secured broker: SASL_SSL, every service its own user, its ACLs only.

The broker is the project's own, started with ``--secure`` (SCRAM-SHA-512 over
TLS, ``StandardAuthorizer``, nothing allowed without an ACL). The topics are
created by the ``topics`` user, the config written and the events read back by
the super user; the ingress, the dispatcher with its local engine, and delivery
each run as themselves with the grants of :mod:`shared.acls` and nothing more.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.kafka_security import kafka_security
from shared.settings import Settings
from testkit.secure import SecureBroker
from tests.e2e.flow import signed_push_reaches_the_subscriber


@pytest.mark.kafka
@pytest.mark.slow
async def test_signed_push_on_a_secured_broker_with_least_privilege(
    secure_broker: SecureBroker, settings: Settings, fixtures_dir: Path, tmp_path: Path
) -> None:
    prefix = f"e{uuid.uuid4().hex[:8]}."
    settings = settings.model_copy(
        update={"kafka_bootstrap_servers": secure_broker.bootstrap, "topic_prefix": prefix}
    )
    await secure_broker.grant(prefix)
    topics = await secure_broker.topics(
        prefix, partitions=settings.topic_partitions, retry_tiers=len(settings.retry_schedule)
    )
    service_env = {s: secure_broker.env(s) for s in ("ingress", "dispatcher", "delivery")}
    with kafka_security(secure_broker.security()):
        await signed_push_reaches_the_subscriber(
            settings, topics, fixtures_dir, tmp_path, service_env=service_env
        )
