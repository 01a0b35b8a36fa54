"""A secured local broker for tests: SASL_SSL, one SCRAM user per service, ACLs enforced.

One per test session (started on first use, on free ports, with a fresh data
folder), shared by the modules that need it; each test grants the services the
ACL table for a topic prefix of its own.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localkafka import LocalKafka
from localkafka.security import SUPER_USER, SecureFiles, grant_services
from shared.kafka import ensure_topics
from shared.kafka_security import KafkaSecurity
from shared.topics import Topics, topic_registry
from testkit import free_port_pair


@dataclass
class SecureBroker:
    kafka: LocalKafka
    bootstrap: str
    files: SecureFiles
    folder: Path

    def security(self, user: str = SUPER_USER) -> KafkaSecurity:
        return self.files.security(user)

    def env(self, user: str) -> dict[str, str]:
        """The settings a process running as ``user`` needs."""
        return self.files.env(user, self.bootstrap)

    async def grant(self, prefix: str, services: tuple[str, ...] | None = None) -> None:
        if services is None:
            await grant_services(self.bootstrap, self.files, prefix)
        else:
            await grant_services(self.bootstrap, self.files, prefix, services)

    async def topics(self, prefix: str, *, partitions: int = 2, retry_tiers: int = 3) -> Topics:
        """The registry's topics under ``prefix``, created by the ``topics`` user."""
        registry = topic_registry(prefix, partitions=partitions, retry_tiers=retry_tiers)
        await self.grant(prefix, ("topics",))
        await ensure_topics(self.bootstrap, registry, security=self.security("topics"))
        return registry

    def stop(self) -> None:
        self.kafka.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


_BROKER: SecureBroker | None = None


def session_secure_broker(add_finalizer: Callable[[Callable[[], None]], None]) -> SecureBroker:
    """The session's secured broker; ``add_finalizer`` is a session fixture's, to stop it."""
    global _BROKER
    if _BROKER is None:
        folder = Path(tempfile.mkdtemp(prefix="hookline-secure-kafka-"))
        kafka = LocalKafka(port=free_port_pair(), data_dir=folder, secure=True)
        bootstrap = kafka.start()
        _BROKER = SecureBroker(kafka, bootstrap, kafka.secure_files, folder)
        add_finalizer(_stop)
    return _BROKER


def _stop() -> None:
    global _BROKER
    if _BROKER is not None:
        _BROKER.stop()
        _BROKER = None
