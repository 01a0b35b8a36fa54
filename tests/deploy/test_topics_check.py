"""The topic-match check: the KafkaTopics in the manifests must be the topic registry's."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from deploy import _manifests, _resources, checks
from shared.topics import topic_registry


def committed_topics() -> list[dict[str, Any]]:
    return _resources.load(checks.TOPICS_FILE.read_text())


def by_name(resources: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in resources if r["spec"]["topicName"] == name)


def test_committed_kafka_topics_match_the_topic_registry():
    assert _manifests.check_topics(committed_topics(), checks.base_settings()) == []


def test_committed_topics_file_is_what_the_registry_generates():
    # Fails when shared/topics.py changes and `python -m deploy.checks --write-topics` was not run.
    assert checks.TOPICS_FILE.read_text() == checks.topics_yaml(checks.base_settings())


def test_every_registry_topic_has_one_kafka_topic():
    names = [r["spec"]["topicName"] for r in committed_topics()]
    assert sorted(names) == sorted(s.name for s in topic_registry("hookline."))


def _mutated(mutate: Any) -> list[str]:
    resources = copy.deepcopy(committed_topics())
    mutate(resources)
    return _manifests.check_topics(resources, checks.base_settings())


def _set(name: str, path: tuple[str, ...], value: object) -> Any:
    def mutate(resources: list[dict[str, Any]]) -> None:
        node = by_name(resources, name)
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _set("hookline.inbound", ("spec", "partitions"), 3),
            "hookline.inbound: partitions 3, registry 6",
            id="partitions",
        ),
        pytest.param(
            _set("hookline.config", ("spec", "config", "cleanup.policy"), "delete"),
            "hookline.config: cleanup.policy delete, registry compact",
            id="cleanup-policy",
        ),
        pytest.param(
            _set("hookline.dlq", ("spec", "config", "retention.ms"), 86400000),
            "hookline.dlq: retention.ms 86400000, registry 2592000000",
            id="retention",
        ),
        pytest.param(
            _set("hookline.config", ("spec", "config", "retention.ms"), 1000),
            "hookline.config: retention.ms=1000 is not in the topic registry",
            id="retention-on-compacted",
        ),
        pytest.param(
            _set("hookline.workflow-events", ("spec", "replicas"), 1),
            "hookline.workflow-events: replicas 1, HOOKLINE_REPLICATION_FACTOR 3",
            id="replicas",
        ),
        pytest.param(
            _set("hookline.inbound", ("metadata", "labels", "strimzi.io/cluster"), "other"),
            "hookline.inbound: label strimzi.io/cluster=other names no Kafka",
            id="cluster-label",
        ),
        pytest.param(
            lambda rs: rs.remove(by_name(rs, "hookline.delivery-retry.4")),
            "hookline.delivery-retry.4 is in the topic registry but has no KafkaTopic",
            id="missing",
        ),
        pytest.param(
            lambda rs: rs.append(
                _manifests.kafka_topic(
                    topic_registry("hookline.").spec("dlq"), cluster="hookline", replicas=3
                )
                | {"spec": {"topicName": "hookline.dlq-old", "partitions": 6, "replicas": 3}}
            ),
            "hookline.dlq-old is declared but not in the topic registry",
            id="extra",
        ),
        pytest.param(
            _set("hookline.delivery-retry.3", ("spec", "topicName"), "hookline.delivery-retry.2"),
            "hookline.delivery-retry.2 is declared twice",
            id="duplicate",
        ),
    ],
)
def test_topic_check_reports_a_topic_that_differs_from_the_registry(mutate, expected):
    # The base render carries the Kafka the topics belong to.
    problems = _mutated(
        lambda rs: (
            rs.append({"kind": "Kafka", "metadata": {"name": "hookline"}}),
            mutate(rs),
        )
    )
    assert any(expected in p for p in problems), problems


def test_topic_check_follows_the_retry_schedule_setting():
    # Three retries need three tiers: the committed nine are six too many.
    settings = checks.base_settings() | {"HOOKLINE_RETRY_SCHEDULE": "5,60,600"}
    problems = _manifests.check_topics(committed_topics(), settings)
    extra = [p for p in problems if "not in the topic registry" in p]
    assert len(extra) == 6, problems


def test_topic_check_follows_the_prefix_of_the_rendered_config_map():
    config_map = {
        "kind": "ConfigMap",
        "metadata": {"name": "hookline-config-abc123"},
        "data": {"HOOKLINE_TOPIC_PREFIX": "acme.hooks.", "HOOKLINE_REPLICATION_FACTOR": "3"},
    }
    problems = _manifests.check_topics([config_map, *committed_topics()])
    assert "topic acme.hooks.inbound is in the topic registry but has no KafkaTopic" in problems


def test_config_values_compare_as_the_broker_spells_them():
    topic = yaml.safe_load(
        "spec: {config: {retention.ms: '604800000', min.cleanable.dirty.ratio: 0.1}}"
    )
    config = {k: _manifests.config_value(v) for k, v in topic["spec"]["config"].items()}
    assert config == {"retention.ms": "604800000", "min.cleanable.dirty.ratio": "0.1"}
    assert _manifests.config_value(False) == "false"


def test_without_strimzi_a_job_must_run_hookline_topics():
    job: dict[str, Any] = {
        "kind": "Job",
        "metadata": {"name": "hookline-topics"},
        "spec": {"template": {"spec": {"containers": [{"name": "t", "args": ["topics"]}]}}},
    }
    assert _manifests.check_topics([job], {}) == []
    job["spec"]["template"]["spec"]["containers"][0]["args"] = ["delivery"]
    assert "nothing creates the topics" in _manifests.check_topics([job], {})[0]
