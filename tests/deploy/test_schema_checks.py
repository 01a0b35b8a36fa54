"""The schema checks with the real tools (kustomize, kubeconform, the pinned schemas).

The tools come from ``.cache/deploy``, which ``make lint`` fills; on a cold cache
the first test fetches them (about a minute), hence the generous timeout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy import _compose, _manifests, _tools, checks

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def tools() -> dict[str, Path | None]:
    strimzi: Path | None
    try:
        strimzi = _tools.ensure_strimzi_schemas()
    except _tools.Unavailable:
        strimzi = None
    return {
        "kustomize": _tools.ensure_kustomize(),
        "kubeconform": _tools.ensure_kubeconform(),
        "k8s": _tools.ensure_k8s_schemas(),
        "strimzi": strimzi,
    }


@pytest.fixture(scope="module")
def base_text(tools: dict[str, Path | None]) -> str:
    kustomize = tools["kustomize"]
    assert kustomize is not None
    return _manifests.render(kustomize, checks.BASE)


def validate(tools: dict[str, Path | None], text: str) -> list[str]:
    kubeconform, k8s = tools["kubeconform"], tools["k8s"]
    assert kubeconform is not None and k8s is not None
    return _manifests.kubeconform(
        kubeconform,
        text,
        k8s_schemas=k8s,
        k8s_version=_tools.K8S_VERSIONS[0],
        crd_schemas=tools["strimzi"],
        skip_kinds=() if tools["strimzi"] else checks.STRIMZI_KINDS,
    )


def test_rendered_base_is_valid_for_kubernetes(tools, base_text):
    assert validate(tools, base_text) == []


def test_kubeconform_rejects_a_misspelt_deployment_field(tools, base_text):
    broken = base_text.replace("revisionHistoryLimit: 5", "revisionHistoryLimits: 5", 1)
    problems = validate(tools, broken)
    assert any("revisionHistoryLimits" in p and "not allowed" in p for p in problems), problems


def test_kubeconform_rejects_a_wrongly_typed_probe(tools, base_text):
    broken = base_text.replace("periodSeconds: 5", "periodSeconds: soon", 1)
    problems = validate(tools, broken)
    assert any("periodSeconds" in p for p in problems), problems


def test_kubeconform_rejects_a_broken_kafka_topic_against_strimzi_schema(tools, base_text):
    if tools["strimzi"] is None:
        pytest.skip("no Java 21+: Strimzi's CRD schemas cannot be generated here")
    broken = base_text.replace("  partitions: 6\n", "  partitions: six\n", 1)
    problems = validate(tools, broken)
    assert any(p.startswith("KafkaTopic/") and "partitions" in p for p in problems), problems


def test_compose_schema_rejects_a_malformed_service():
    schema = _tools.ensure_compose_schema()
    doc = _compose.load((checks.DEPLOY / "compose.yaml").read_text())
    assert _compose.schema_problems(doc, schema) == []
    doc["services"]["kafka"]["volumes"] = {"kafka-data": "/var/lib/kafka/data"}
    doc["services"]["ingress"]["restart_policy"] = "always"
    problems = _compose.schema_problems(doc, schema)
    assert any(p.startswith("/services/kafka/volumes") for p in problems), problems
    assert any("restart_policy" in p for p in problems), problems


def test_deploy_checks_fail_on_a_broken_manifest(tools, tmp_path, monkeypatch, capsys):
    k8s = tmp_path / "k8s"
    shutil.copytree(checks.K8S, k8s)
    ingress = k8s / "base" / "ingress.yaml"
    ingress.write_text(ingress.read_text().replace("minAvailable: 1", "minAvailable: [1]"))
    topics = k8s / "base" / "topics.yaml"
    topics.write_text(topics.read_text().replace("partitions: 6", "partitions: 12", 1))
    route = k8s / "overlays" / "example" / "route.yaml"
    route.write_text(route.read_text().replace("- path: /webhooks", "- path: /"))
    users = k8s / "base" / "kafka-users.yaml"
    users.write_text(users.read_text().replace("name: hookline.inbound", "name: hookline.dlq", 1))
    monkeypatch.setattr(checks, "K8S", k8s)

    assert checks.main([]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "PodDisruptionBudget/hookline-ingress" in out
    assert "partitions 12, registry 6" in out
    # A public route wider than /webhooks, and a KafkaUser off the ACL table.
    assert "Ingress/hookline-webhooks: routes / (Prefix), wider than the public /webhooks" in out
    assert "KafkaUser/hookline-ingress: lacks allow Write on topic hookline.inbound" in out
    assert "KafkaUser/hookline-ingress: grants allow Write on topic hookline.dlq" in out
