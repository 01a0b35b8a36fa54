"""The deployment's promises beyond the schemas: the compose file's wiring and the image's
rules (moved out of ``test_policy_checks.py``, unchanged)."""

from __future__ import annotations

from typing import Any

import pytest

from deploy import _compose, _dockerfile, checks


def compose_doc() -> dict[str, Any]:
    return _compose.load((checks.DEPLOY / "compose.yaml").read_text())


def test_committed_compose_file_is_wired_as_promised():
    doc = compose_doc()
    assert list(doc["services"]) == [
        "kafka",
        "topics",
        "ingress",
        "admin",
        "dispatcher",
        "delivery",
        "jaeger",
        "prometheus",
        "grafana",
    ]
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
        (
            ("ingress", "ports"),
            ["8080:8080", "8084:8084"],
            "ingress: the ingress' internal port may be published on loopback only",
        ),
        (
            ("ingress", "healthcheck"),
            {"test": ["CMD", "curl", "-f", "http://127.0.0.1:8080/readyz"]},
            "ingress: the healthcheck must GET http://127.0.0.1:8084/readyz",
        ),
        (("delivery", "command"), ["dispatcher"], "delivery: must run `hookline delivery`"),
        (("dispatcher", "read_only"), False, "dispatcher: the root filesystem must be read-only"),
        (("delivery", "stop_grace_period"), "10s", "stop_grace_period must exceed"),
        (("ingress", "depends_on"), {"kafka": {}}, "must start after the topics step"),
        (
            ("admin", "ports"),
            ["8081:8081"],
            "admin: the admin port may be published on loopback only",
        ),
        (("admin", "command"), ["ingress"], "admin: must run `hookline admin`"),
        (
            ("admin", "healthcheck"),
            {"test": ["CMD", "curl", "-f", "http://127.0.0.1:8080/readyz"]},
            "admin: the healthcheck must GET http://127.0.0.1:8081/readyz",
        ),
        (
            ("ingress", "environment"),
            {"HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "HOOKLINE_ADMIN_TOKEN": "x"},
            "ingress: `hookline ingress` must not hold HOOKLINE_ADMIN_TOKEN (only admin)",
        ),
        (
            ("dispatcher", "environment"),
            ["HOOKLINE_KAFKA_BOOTSTRAP_SERVERS=kafka:9092", "HOOKLINE_SECRET_KEY=x"],
            "dispatcher: `hookline dispatcher` must not hold HOOKLINE_SECRET_KEY",
        ),
        (
            ("topics", "environment"),
            {"HOOKLINE_ADMIN_TOKEN": "x"},
            "topics: `hookline topics` must not hold HOOKLINE_ADMIN_TOKEN",
        ),
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


PYPROJECT = (checks.DEPLOY.parent / "pyproject.toml").read_text()
DOCKERIGNORE = (checks.DEPLOY.parent / ".dockerignore").read_text()


def test_the_image_builds_every_package_the_wheel_ships():
    assert _dockerfile.packages(PYPROJECT) == [
        "cli",
        "devstack",
        "localkafka",
        "services",
        "shared",
    ]
    assert _dockerfile.check_sources(DOCKERFILE, PYPROJECT, DOCKERIGNORE) == []


def test_dockerfile_check_reports_a_package_left_out_of_the_image():
    # Without cli/ the wheel has no `hookline` command's module: the image cannot start.
    without_copy = DOCKERFILE.replace("COPY cli ./cli\n", "")
    assert without_copy != DOCKERFILE
    assert _dockerfile.check_sources(without_copy, PYPROJECT, DOCKERIGNORE) == [
        "the build stage does not COPY cli/ (pyproject.toml ships it)"
    ]
    ignored = DOCKERIGNORE.replace("!localkafka/\n", "")
    assert ignored != DOCKERIGNORE
    assert _dockerfile.check_sources(DOCKERFILE, PYPROJECT, ignored) == [
        ".dockerignore leaves localkafka/ out of the build context"
    ]
    # Copying the whole context counts as copying every package.
    whole = DOCKERFILE.replace("COPY pyproject.toml README.md ./", "COPY . .")
    assert _dockerfile.check_sources(whole.replace("COPY cli ./cli\n", ""), PYPROJECT, "") == []
