"""The test session's Kafka broker, and per-test topics and settings.

The broker, in order of preference: the cluster in
``HOOKLINE_KAFKA_BOOTSTRAP_SERVERS``; testcontainers' Kafka when a Docker
engine answers; the project's own launcher (``localkafka``), started on
free ports with a fresh data folder and stopped when the session ends.

Under pytest-xdist (``make test`` runs two workers) the controller starts the one broker
before the workers exist and hands it to them through the environment
(``HOOKLINE_TEST_SESSION_BROKER``); only the controller stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import Topics, topic_registry
from testkit import FIXTURES, TEST_ADMIN_TOKEN, TEST_SECRET_KEY, free_port_pair
from testkit.hangs import tasks_dumped_after


@dataclass
class BrokerHandle:
    bootstrap: str
    source: str
    version: str
    local: Any = None  # LocalKafka when the launcher started it
    _stop: list[Any] = field(default_factory=list)


_BROKER: BrokerHandle | None = None


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        return bool(client.ping())
    except Exception:
        return False


def _start_broker() -> BrokerHandle:
    env = os.environ.get("HOOKLINE_KAFKA_BOOTSTRAP_SERVERS")
    if env:
        return BrokerHandle(env, "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS", "external cluster")
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer("apache/kafka:4.1.1").with_kraft()
        container.start()
        handle = BrokerHandle(container.get_bootstrap_server(), "testcontainers", "4.1.1")
        handle._stop.append(container.stop)
        return handle
    from localkafka import LocalKafka

    data = Path(tempfile.mkdtemp(prefix="hookline-kafka-"))
    # Every test creates its own topics (some fourteen thousand partitions over a whole
    # run); the launcher's default heap is sized for a development stack, not for that.
    broker = LocalKafka(port=free_port_pair(), data_dir=data, heap="1536m")
    bootstrap = broker.start()
    status = broker.status()
    handle = BrokerHandle(bootstrap, "local launcher", status.version or "?", local=broker)
    handle._stop.append(broker.stop)
    handle._stop.append(lambda: __import__("shutil").rmtree(data, ignore_errors=True))
    return handle


def _shared_broker(described: str) -> BrokerHandle:
    """The controller's broker, in a worker: used, never stopped here."""
    facts = json.loads(described)
    local = None
    if facts.get("data_dir"):
        from localkafka import LocalKafka

        local = LocalKafka(port=int(facts["port"]), data_dir=Path(facts["data_dir"]))
    return BrokerHandle(facts["bootstrap"], facts["source"], facts["version"], local=local)


def _described(handle: BrokerHandle) -> str:
    local = handle.local
    return json.dumps(
        {
            "bootstrap": handle.bootstrap,
            "source": handle.source,
            "version": handle.version,
            "port": getattr(local, "port", None),
            "data_dir": str(local.state_dir) if local is not None else None,
        }
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    global _BROKER
    if os.environ.get("HOOKLINE_TESTS_NO_KAFKA"):
        return
    shared = os.environ.get("HOOKLINE_TEST_SESSION_BROKER")
    if shared and os.environ.get("PYTEST_XDIST_WORKER"):
        _BROKER = _shared_broker(shared)
        return
    _BROKER = _start_broker()
    # Runs before pytest-xdist forks its workers (its own hook is trylast): they inherit it.
    os.environ["HOOKLINE_TEST_SESSION_BROKER"] = _described(_BROKER)
    os.environ.setdefault("HOOKLINE_TEST_BOOTSTRAP", _BROKER.bootstrap)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    marker = item.get_closest_marker("timeout")
    seconds = (
        float(marker.args[0])
        if marker and marker.args
        else float(item.config.getini("timeout") or 0)
    )
    if seconds <= 5:
        return (yield)
    with tasks_dumped_after(seconds - 3):
        return (yield)


def pytest_report_header(config: pytest.Config) -> str:
    if _BROKER is None:
        return "kafka: none (HOOKLINE_TESTS_NO_KAFKA)"
    return f"kafka: Apache Kafka {_BROKER.version} via {_BROKER.source} at {_BROKER.bootstrap}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _BROKER is not None:
        for stop in _BROKER._stop:
            with contextlib.suppress(Exception):
                stop()


@pytest.fixture(scope="session")
def broker() -> BrokerHandle:
    if _BROKER is None:
        pytest.skip("no Kafka broker in this session")
    return _BROKER


@pytest.fixture(scope="session")
def bootstrap(broker: BrokerHandle) -> str:
    return broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix of this test's own: no test reads another's records."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def settings(bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        admin_view_path=tmp_path / "admin-view.sqlite3",
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=topic_prefix,
        topic_partitions=3,
        secret_key=TEST_SECRET_KEY,
        admin_token=[TEST_ADMIN_TOKEN],
        allow_private_destinations=True,
        allow_insecure_urls=True,
        retry_schedule=(0.2, 0.4, 0.8),
        retry_jitter=0.0,
        breaker_cooldown=1.0,
    )


@pytest.fixture
async def topics(settings: Settings) -> Topics:
    """Every registry topic created under this test's prefix."""
    registry = topic_registry(
        settings.topic_prefix,
        partitions=settings.topic_partitions,
        retry_tiers=len(settings.retry_schedule),
    )
    await ensure_topics(settings.kafka_bootstrap_servers, registry)
    return registry


@pytest.fixture
def fixtures_dir() -> Path:
    """The project's copy of the provider payloads and signature vectors (``tests/fixtures``).

    Missing fixtures fail the test: a suite that skips them proves nothing."""
    if not (FIXTURES / "signature-vectors.json").exists():
        pytest.fail(f"the test fixtures are missing from {FIXTURES}; restore them from git")
    return FIXTURES
