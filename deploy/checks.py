"""Checks of the deployment files, run by ``make lint`` (``python -m deploy.checks``).

* Kubernetes: every kustomization under ``deploy/k8s`` (the base and each overlay)
  is rendered with kustomize and validated by kubeconform, strictly, against the
  Kubernetes JSON schemas of the oldest and newest supported Kubernetes and
  against Strimzi's CRD schemas; then the KafkaTopics are matched to the topic
  registry and the workloads to what the deployment promises (probes, hardening,
  drains, disruption budgets, autoscaling, every service present, secrets only where
  they are read, an admin API and an ingress internal port that stay inside the
  cluster, a public route for ``/webhooks`` alone), and the Kafka users and each
  workload's credentials to the ACL table (:mod:`deploy._kafka_users`).
* Compose: ``deploy/compose.yaml`` against the Compose Specification's schema,
  then its wiring.
* Dockerfile: hadolint, then the image's own rules, and every package of
  ``pyproject.toml`` copied into the build.

Tools and schemas are fetched and pinned by :mod:`deploy._tools` into
``.cache/deploy`` on first use. ``--write-topics`` regenerates
``deploy/k8s/base/topics.yaml`` from the topic registry, ``--write-users``
``deploy/k8s/base/kafka-users.yaml`` from the ACL table (``shared/acls.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from deploy import _compose, _dashboard, _dockerfile, _kafka_users, _manifests, _resources, _tools
from shared.acls import SERVICES

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
TOPICS_FILE = BASE / "topics.yaml"
USERS_FILE = BASE / "kafka-users.yaml"
STRIMZI_KINDS = ("Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser")


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def base_settings() -> dict[str, str]:
    """The ``HOOKLINE_*`` literals of the base's configMapGenerator."""
    doc = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    for gen in doc.get("configMapGenerator") or []:
        if gen.get("name") == "hookline-config":
            return dict(lit.split("=", 1) for lit in gen.get("literals") or [])
    return {}


def topics_yaml(settings: dict[str, str], cluster: str = "hookline") -> str:
    replicas = int(settings.get("HOOKLINE_REPLICATION_FACTOR", "1"))
    docs = [
        _manifests.kafka_topic(spec, cluster=cluster, replicas=replicas)
        for spec in _manifests.registry_for(settings)
    ]
    header = (
        "# One KafkaTopic per topic of the topic registry (shared/topics.py), for the settings of\n"
        "# kustomization.yaml. Generated: python -m deploy.checks --write-topics; make lint fails\n"
        "# when this file and the registry disagree.\n"
    )
    return header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=False)


def users_yaml(settings: dict[str, str], cluster: str = "hookline") -> str:
    prefix = settings.get("HOOKLINE_TOPIC_PREFIX", "hookline.")
    docs = [_kafka_users.kafka_user(s, prefix=prefix, cluster=cluster) for s in SERVICES]
    header = (
        "# One KafkaUser per service with exactly its ACLs (shared/acls.py, the table in\n"
        "# docs/deploy.md) for the prefix of kustomization.yaml; Strimzi's user operator keeps\n"
        "# each one's SCRAM-SHA-512 password in a Secret of the user's name (key: password).\n"
        "# Generated: python -m deploy.checks --write-users; make lint fails when this file and\n"
        "# the table disagree.\n"
    )
    return header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=False)


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def section(self, title: str, problems: list[str]) -> None:
        if problems:
            self.failed += len(problems)
            print(f"FAIL {title}")
            for p in problems:
                print(f"     - {p}")
        else:
            print(f"ok   {title}")


def _fetch_all() -> dict[str, Future[Any]]:
    pool = ThreadPoolExecutor(max_workers=6)
    jobs: dict[str, Callable[[], Path]] = {
        "kustomize": _tools.ensure_kustomize,
        "kubeconform": _tools.ensure_kubeconform,
        "k8s": _tools.ensure_k8s_schemas,
        "strimzi": _tools.ensure_strimzi_schemas,
        "hadolint": _tools.ensure_hadolint,
        "compose": _tools.ensure_compose_schema,
    }
    futures = {name: pool.submit(job) for name, job in jobs.items()}
    pool.shutdown(wait=False)
    return futures


def _tool(futures: dict[str, Future[Any]], name: str, report: Report) -> Path | None:
    try:
        path: Path = futures[name].result()
        return path
    except _tools.ToolError as exc:
        report.section(f"fetch {name}", [str(exc)])
        return None


def check_kubernetes(futures: dict[str, Future[Any]], report: Report) -> None:
    kustomize = _tool(futures, "kustomize", report)
    kubeconform = _tool(futures, "kubeconform", report)
    k8s = _tool(futures, "k8s", report)
    strimzi: Path | None = None
    try:
        strimzi = futures["strimzi"].result()
    except _tools.Unavailable as exc:
        print(f"warn Strimzi resources not schema-checked: {exc}")
    except _tools.ToolError as exc:
        report.section("fetch Strimzi CRD schemas", [str(exc)])
    if kustomize is None:
        return

    def check(directory: Path) -> list[tuple[str, list[str]]]:
        label = (
            directory.relative_to(DEPLOY.parent)
            if directory.is_relative_to(DEPLOY.parent)
            else directory
        )
        try:
            text = _manifests.render(kustomize, directory)
        except ValueError as exc:
            return [(f"{label}: kustomize build", [str(exc)])]
        resources = _resources.load(text)
        sections = []
        if kubeconform is not None and k8s is not None:
            what = "Kubernetes" + (" and Strimzi" if strimzi else "")
            for version in _tools.K8S_VERSIONS:
                problems = _manifests.kubeconform(
                    kubeconform,
                    text,
                    k8s_schemas=k8s,
                    k8s_version=version,
                    crd_schemas=strimzi,
                    skip_kinds=() if strimzi else STRIMZI_KINDS,
                )
                sections.append(
                    (f"{label}: {len(resources)} resources valid for {what} {version}", problems)
                )
        sections.append(
            (f"{label}: topics match the topic registry", _manifests.check_topics(resources))
        )
        sections.append(
            (f"{label}: workloads, exposure, secrets", _manifests.check_workloads(resources))
        )
        settings = _manifests.settings_of(resources)
        sections.append(
            (
                f"{label}: Kafka users, credentials, ACLs",
                _kafka_users.check_kafka_users(resources, settings)
                + _kafka_users.check_kafka_credentials(resources, settings),
            )
        )
        return sections

    # The renders and kubeconform runs are subprocesses: run the kustomizations side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for sections in pool.map(check, kustomizations()):
            for title, problems in sections:
                report.section(title, problems)


def check_compose(futures: dict[str, Future[Any]], report: Report) -> None:
    path = DEPLOY / "compose.yaml"
    try:
        doc = _compose.load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        report.section("deploy/compose.yaml parses", [str(exc)])
        return
    schema = _tool(futures, "compose", report)
    if schema is not None:
        report.section(
            "deploy/compose.yaml valid for the Compose Specification",
            _compose.schema_problems(doc, schema),
        )
    services = ", ".join(doc.get("services") or {})
    report.section(f"deploy/compose.yaml wiring ({services})", _compose.check_compose(doc))


def check_dockerfile(futures: dict[str, Future[Any]], report: Report) -> None:
    path = DEPLOY / "Dockerfile"
    report.section("deploy/Dockerfile rules", _dockerfile.check_dockerfile(path.read_text()))
    root = DEPLOY.parent
    report.section(
        "deploy/Dockerfile builds every package of pyproject.toml",
        _dockerfile.check_sources(
            path.read_text(),
            (root / "pyproject.toml").read_text(),
            (root / ".dockerignore").read_text(),
        ),
    )
    hadolint = _tool(futures, "hadolint", report)
    if hadolint is not None:
        report.section("deploy/Dockerfile hadolint", _dockerfile.hadolint(hadolint, path))


def check_dashboard(report: Report) -> None:
    """The Grafana dashboard: its structure, and every query naming exported metrics."""
    for title, problems in _dashboard.check_dashboard():
        report.section(title, problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.checks", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--write-topics", action="store_true", help="regenerate deploy/k8s/base/topics.yaml"
    )
    parser.add_argument(
        "--write-users", action="store_true", help="regenerate deploy/k8s/base/kafka-users.yaml"
    )
    args = parser.parse_args(argv)
    if args.write_topics or args.write_users:
        for wanted, path, text in (
            (args.write_topics, TOPICS_FILE, topics_yaml),
            (args.write_users, USERS_FILE, users_yaml),
        ):
            if wanted:
                path.write_text(text(base_settings()))
                print(f"wrote {path.relative_to(DEPLOY.parent)}")
        return 0
    started = time.monotonic()
    report = Report()
    futures = _fetch_all()
    check_dockerfile(futures, report)
    check_compose(futures, report)
    check_dashboard(report)
    check_kubernetes(futures, report)
    elapsed = time.monotonic() - started
    if report.failed:
        print(f"deploy checks: {report.failed} problem(s) ({elapsed:.1f} s)")
        return 1
    print(f"deploy checks: all passed ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
