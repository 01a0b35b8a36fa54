"""The deployment's promises beyond the schemas: workloads, exposure, compose, Dockerfile."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from deploy import _compose, _dockerfile, _manifests, checks

Resources = list[dict[str, Any]]


def base_resources() -> Resources:
    files = ("serviceaccount.yaml", "ingress.yaml", "dispatcher.yaml", "delivery.yaml")
    return [r for f in files for r in _manifests.load((checks.BASE / f).read_text())]


def find(resources: Resources, kind: str, name: str) -> dict[str, Any]:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


def container(resources: Resources, kind: str, name: str) -> dict[str, Any]:
    c: dict[str, Any] = find(resources, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return c


def test_committed_workloads_keep_their_promises():
    assert _manifests.check_workloads(base_resources()) == []


def _pop_readiness(rs: Resources) -> None:
    container(rs, "Deployment", "hookline-ingress").pop("readinessProbe")


def _short_grace(rs: Resources) -> None:
    find(rs, "StatefulSet", "hookline-dispatcher")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ] = 20


def _writable_root(rs: Resources) -> None:
    container(rs, "Deployment", "hookline-delivery")["securityContext"][
        "readOnlyRootFilesystem"
    ] = False


def _literal_token(rs: Resources) -> None:
    env = container(rs, "Deployment", "hookline-ingress")["env"]
    token = next(e for e in env if e["name"] == "HOOKLINE_ADMIN_TOKEN")
    token.pop("valueFrom")
    token["value"] = "committed-by-mistake"


def _admin_load_balancer(rs: Resources) -> None:
    find(rs, "Service", "hookline-admin")["spec"]["type"] = "LoadBalancer"


def _admin_route(rs: Resources) -> None:
    backend = {"service": {"name": "hookline-admin", "port": {"number": 8081}}}
    rule = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
    rs.append(
        {"kind": "Ingress", "metadata": {"name": "oops"}, "spec": {"rules": [rule]}},
    )


def _committed_secret(rs: Resources) -> None:
    rs.append({"kind": "Secret", "metadata": {"name": "hookline-secrets"}, "data": {}})


def _no_pdb(rs: Resources) -> None:
    rs.remove(find(rs, "PodDisruptionBudget", "hookline-delivery"))


def _no_hpa(rs: Resources) -> None:
    rs.remove(find(rs, "HorizontalPodAutoscaler", "hookline-ingress"))


def _no_delivery(rs: Resources) -> None:
    rs.remove(find(rs, "Deployment", "hookline-delivery"))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_pop_readiness, "readinessProbe must GET /readyz"),
        (_short_grace, "terminationGracePeriodSeconds 20 must exceed"),
        (_writable_root, "readOnlyRootFilesystem must be true"),
        (_literal_token, "HOOKLINE_ADMIN_TOKEN must come from a Secret"),
        (_admin_load_balancer, "exposes the admin port through a LoadBalancer"),
        (_admin_route, "routes to the admin Service hookline-admin"),
        (_committed_secret, "a Secret must never be committed"),
        (_no_pdb, "no PodDisruptionBudget selects its pods"),
        (_no_hpa, "no HorizontalPodAutoscaler scales it"),
        (_no_delivery, "no workload runs `hookline delivery`"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_workload_check_reports_a_broken_promise(
    mutate: Callable[[Resources], None], expected: str
) -> None:
    resources = copy.deepcopy(base_resources())
    mutate(resources)
    problems = _manifests.check_workloads(resources)
    assert any(expected in p for p in problems), problems


def compose_doc() -> dict[str, Any]:
    return _compose.load((checks.DEPLOY / "compose.yaml").read_text())


def test_committed_compose_file_is_wired_as_promised():
    doc = compose_doc()
    assert list(doc["services"]) == ["kafka", "topics", "ingress", "dispatcher", "delivery"]
    assert _compose.check_compose(doc) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("kafka", "image"), "apache/kafka:latest", "kafka: image must be apache/kafka:4.1.1"),
        (
            ("ingress", "ports"),
            ["8080:8080", "8081:8081"],
            "admin port may be published on loopback",
        ),
        (("delivery", "command"), ["dispatcher"], "delivery: must run `hookline delivery`"),
        (("dispatcher", "read_only"), False, "dispatcher: the root filesystem must be read-only"),
        (("delivery", "stop_grace_period"), "10s", "stop_grace_period must exceed"),
        (("ingress", "depends_on"), {"kafka": {}}, "must start after the topics step"),
    ],
)
def test_compose_check_reports_broken_wiring(path, value, expected):
    doc = compose_doc()
    doc["services"][path[0]][path[1]] = value
    problems = _compose.check_compose(doc)
    assert any(expected in p for p in problems), problems


def test_compose_check_reports_a_missing_service():
    doc = compose_doc()
    del doc["services"]["topics"]
    problems = _compose.check_compose(doc)
    assert "no service named topics" in problems
    assert any("depends on topics, which is not a service" in p for p in problems)


DOCKERFILE = (checks.DEPLOY / "Dockerfile").read_text()


def test_committed_dockerfile_keeps_the_image_rules():
    assert _dockerfile.check_dockerfile(DOCKERFILE) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "FROM python:3.11.14-slim-trixie AS build",
            "FROM python:3.11-slim AS build",
            "pin the base",
        ),
        ("USER 10001:10001", "USER root", "non-root USER"),
        ('ENTRYPOINT ["hookline"]', "ENTRYPOINT hookline", 'ENTRYPOINT ["hookline"]'),
        ("COPY --from=build /opt/hookline", "COPY . ", "take the built environment"),
        (
            "RUN python -m pip uninstall",
            "RUN apt-get install -y --no-install-recommends gcc=14 && python -m pip uninstall",
            "must not build or install build tools (gcc)",
        ),
    ],
)
def test_dockerfile_check_reports_a_broken_rule(old, new, expected):
    text = DOCKERFILE.replace(old, new)
    assert text != DOCKERFILE
    problems = _dockerfile.check_dockerfile(text)
    assert any(expected in p for p in problems), problems


def test_dockerfile_check_wants_more_than_one_stage():
    single = 'FROM python:3.11.14-slim-trixie\nUSER 10001\nENTRYPOINT ["hookline"]\n'
    assert "built in stages" in _dockerfile.check_dockerfile(single)[0]
