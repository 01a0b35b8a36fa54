"""Checks of the rendered Kubernetes manifests.

Every function takes parsed documents (or rendered text) and returns a list of
problems, one readable line each; an empty list means the check passed. They
know nothing about where the tools come from: ``deploy.checks`` passes paths in.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from deploy._exposure import check_exposure
from deploy._resources import (
    Resource,
    command,
    name,
    pod_labels,
    pod_spec,
    selects,
)
from shared.settings import STANDARD_RETRY_SCHEDULE
from shared.topics import TopicSpec, topic_registry

SERVICES = ("ingress", "admin", "dispatcher", "delivery")
# Who may hold each secret setting: the services whose code reads it (a test holds this
# to the code). The admin tokens stay out of the public-facing ingress.
SECRET_READERS: dict[str, frozenset[str]] = {
    "HOOKLINE_ADMIN_TOKEN": frozenset({"admin"}),
    "HOOKLINE_SECRET_KEY": frozenset({"ingress", "admin", "delivery"}),
}
SECRET_SETTINGS = tuple(SECRET_READERS)
# The only writable path under a read-only root filesystem (an emptyDir).
WRITABLE_DIR = "/tmp"  # noqa: S108
# Topic settings a deployment may add without the registry knowing (operational tuning).
TOPIC_CONFIG_ALLOWED_EXTRA = frozenset({"min.insync.replicas"})


def render(kustomize: Path, directory: Path) -> str:
    done = subprocess.run(
        [str(kustomize), "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise ValueError(f"kustomize build {directory} failed: {done.stderr.strip()}")
    return done.stdout


def kubeconform(
    kubeconform_bin: Path,
    text: str,
    *,
    k8s_schemas: Path,
    k8s_version: str,
    crd_schemas: Path | None,
    skip_kinds: Iterable[str] = (),
) -> list[str]:
    """Validate ``text`` (a multi-document YAML) against the schemas, strictly."""
    locations = [
        "-schema-location",
        f"{k8s_schemas}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/"
        "{{ .ResourceKind }}{{ .KindSuffix }}.json",
    ]
    if crd_schemas is not None:
        locations += [
            "-schema-location",
            f"{crd_schemas}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        ]
    skip = ",".join(skip_kinds)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        cmd = [str(kubeconform_bin), "-strict", "-output", "json", "-kubernetes-version"]
        cmd += [k8s_version, *locations, *(["-skip", skip] if skip else []), f.name]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    try:
        report = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        return [f"kubeconform: {done.stdout.strip() or done.stderr.strip()}"]
    problems = []
    for res in report.get("resources") or []:
        if res.get("status") in ("statusInvalid", "statusError"):
            where = f"{res.get('kind')}/{res.get('name')}"
            problems.append(f"{where}: {_details(res)}")
    if done.returncode != 0 and not problems:
        problems.append(f"kubeconform exited {done.returncode}: {done.stderr.strip()}")
    return problems


def _details(result: Mapping[str, Any]) -> str:
    """The leaf errors of one kubeconform result, without the "validation failed" wrappers."""
    message = str(result.get("msg") or "")
    leaves = [
        f"{path}: {text.strip()}"
        for path, text in re.findall(r"- at '([^']*)': (.*?)(?=\s+- at '|$)", message)
        if text.strip() != "validation failed"
    ]
    if not leaves:
        leaves = [f"{e.get('path')}: {e.get('msg')}" for e in result.get("validationErrors") or []]
    return "; ".join(leaves) or message


def settings_of(resources: list[Resource]) -> dict[str, str]:
    """The ``HOOKLINE_*`` settings of the rendered ConfigMap (kustomize adds a hash suffix)."""
    for r in resources:
        name = r.get("metadata", {}).get("name", "")
        if r.get("kind") == "ConfigMap" and name.startswith("hookline-config"):
            return {str(k): str(v) for k, v in (r.get("data") or {}).items()}
    return {}


def registry_for(settings: Mapping[str, str]) -> list[TopicSpec]:
    """The topics hookline expects for these settings (the defaults of ``Settings`` otherwise)."""
    schedule = settings.get("HOOKLINE_RETRY_SCHEDULE")
    tiers = (
        len([p for p in schedule.split(",") if p.strip()])
        if schedule
        else len(STANDARD_RETRY_SCHEDULE)
    )
    return list(
        topic_registry(
            settings.get("HOOKLINE_TOPIC_PREFIX", "hookline."),
            partitions=int(settings.get("HOOKLINE_TOPIC_PARTITIONS", "6")),
            retry_tiers=tiers,
        )
    )


def config_value(value: object) -> str:
    """A Kafka config value as the broker spells it (YAML may give ints, floats, booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def kafka_topic(spec: TopicSpec, *, cluster: str, replicas: int) -> Resource:
    """The Strimzi ``KafkaTopic`` for one registry topic."""

    def typed(value: str) -> object:
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
        return value

    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": spec.name, "labels": {"strimzi.io/cluster": cluster}},
        "spec": {
            "topicName": spec.name,
            "partitions": spec.partitions,
            "replicas": replicas,
            "config": {k: typed(v) for k, v in spec.configs.items()},
        },
    }


def check_topics(resources: list[Resource], settings: Mapping[str, str] | None = None) -> list[str]:
    """The KafkaTopics must be exactly the registry's topics, with its settings."""
    settings = settings_of(resources) if settings is None else settings
    if not any(r.get("kind") in ("Kafka", "KafkaTopic") for r in resources):
        # Kafka is not managed here: then `hookline topics` must create the topics.
        if any(_runs_topics(r) for r in resources if r.get("kind") == "Job"):
            return []
        return ["no KafkaTopics and no Job that runs `hookline topics`: nothing creates the topics"]
    expected = {s.name: s for s in registry_for(settings)}
    replicas = int(settings.get("HOOKLINE_REPLICATION_FACTOR", "1"))
    clusters = {r["metadata"]["name"] for r in resources if r.get("kind") == "Kafka"}
    declared: dict[str, Resource] = {}
    problems = []
    for r in resources:
        if r.get("kind") != "KafkaTopic":
            continue
        spec = r.get("spec") or {}
        name = spec.get("topicName") or r.get("metadata", {}).get("name")
        if name in declared:
            problems.append(f"topic {name} is declared twice")
        declared[name] = r
        cluster = (r.get("metadata", {}).get("labels") or {}).get("strimzi.io/cluster")
        if clusters and cluster not in clusters:
            problems.append(
                f"topic {name}: label strimzi.io/cluster={cluster} names no Kafka here "
                f"({', '.join(sorted(clusters))})"
            )
    problems.extend(
        f"topic {name} is declared but not in the topic registry"
        for name in sorted(set(declared) - set(expected))
    )
    for name, want in expected.items():
        if name not in declared:
            problems.append(f"topic {name} is in the topic registry but has no KafkaTopic")
            continue
        spec = declared[name].get("spec") or {}
        if spec.get("partitions") != want.partitions:
            problems.append(
                f"topic {name}: partitions {spec.get('partitions')}, registry {want.partitions}"
            )
        if spec.get("replicas") != replicas:
            problems.append(
                f"topic {name}: replicas {spec.get('replicas')}, "
                f"HOOKLINE_REPLICATION_FACTOR {replicas}"
            )
        have = {str(k): config_value(v) for k, v in (spec.get("config") or {}).items()}
        for key, value in want.configs.items():
            if have.get(key) != value:
                problems.append(f"topic {name}: {key} {have.get(key)}, registry {value}")
        problems.extend(
            f"topic {name}: {key}={have[key]} is not in the topic registry"
            for key in sorted(set(have) - set(want.configs) - TOPIC_CONFIG_ALLOWED_EXTRA)
        )
    return problems


def _runs_topics(job: Resource) -> bool:
    return any(
        (c.get("args") or c.get("command") or [])[-1:] == ["topics"]
        for c in pod_spec(job).get("containers") or []
    )


def _prestop_seconds(container: Resource) -> int:
    exec_ = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
    command = exec_.get("command") or []
    if len(command) == 2 and command[0] == "sleep":
        return int(command[1])
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
    return int(sleep.get("seconds", 0))


def _check_container(where: str, c: Resource, grace: int, shutdown: float) -> list[str]:
    problems = []
    probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in probes.items():
        got = c.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            problems.append(f"{where}: {probe} must GET {path} (has {got})")
    resources = c.get("resources") or {}
    if not (resources.get("requests") or {}).get("cpu") or not (
        resources.get("requests") or {}
    ).get("memory"):
        problems.append(f"{where}: needs cpu and memory requests")
    if not (resources.get("limits") or {}).get("memory"):
        problems.append(f"{where}: needs a memory limit")
    sc = c.get("securityContext") or {}
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation must be false")
    if not any(m.get("mountPath") == WRITABLE_DIR for m in c.get("volumeMounts") or []):
        problems.append(f"{where}: needs a writable /tmp (an emptyDir) under a read-only root")
    problems.extend(
        f"{where}: {env['name']} must come from a Secret, not a literal"
        for env in c.get("env") or []
        if env.get("name") in SECRET_SETTINGS and "value" in env
    )
    problems.extend(
        f"{where}: `hookline {command(c)}` must not hold {env['name']} "
        f"(only {', '.join(sorted(SECRET_READERS[env['name']]))})"
        for env in c.get("env") or []
        if env.get("name") in SECRET_READERS and command(c) not in SECRET_READERS[env["name"]]
    )
    needed = shutdown + _prestop_seconds(c)
    if grace <= needed:
        problems.append(
            f"{where}: terminationGracePeriodSeconds {grace} must exceed the preStop pause "
            f"plus HOOKLINE_SHUTDOWN_GRACE ({needed:g} s)"
        )
    return problems


def check_workloads(resources: list[Resource]) -> list[str]:
    """What the deployment promises beyond the schemas: probes, hardening, drains, exposure."""
    settings = settings_of(resources)
    shutdown = float(settings.get("HOOKLINE_SHUTDOWN_GRACE", "20"))
    problems = [
        f"{name(r)}: a Secret must never be committed"
        for r in resources
        if r.get("kind") == "Secret"
    ]
    problems += [
        f"{name(r)}: {key} must come from a Secret, not a ConfigMap"
        for r in resources
        if r.get("kind") == "ConfigMap"
        for key in r.get("data") or {}
        if key in SECRET_SETTINGS
    ]
    workloads = [r for r in resources if r.get("kind") in ("Deployment", "StatefulSet")]
    pdbs = [r for r in resources if r.get("kind") == "PodDisruptionBudget"]
    hpas = [r for r in resources if r.get("kind") == "HorizontalPodAutoscaler"]
    seen: dict[str, Resource] = {}
    for w in workloads:
        pod = pod_spec(w)
        containers = pod.get("containers") or []
        if not containers:
            problems.append(f"{name(w)}: no containers")
            continue
        runs = command(containers[0])
        if runs in SERVICES:
            seen[runs] = w
        if (pod.get("securityContext") or {}).get("runAsNonRoot") is not True:
            problems.append(f"{name(w)}: the pod needs securityContext.runAsNonRoot: true")
        annotations = w["spec"]["template"].get("metadata", {}).get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true":
            problems.append(f"{name(w)}: needs the prometheus.io/scrape annotation")
        grace = int(pod.get("terminationGracePeriodSeconds", 30))
        for c in containers:
            problems += _check_container(f"{name(w)} container {c.get('name')}", c, grace, shutdown)
        if not any(selects(p.get("spec", {}).get("selector") or {}, pod_labels(w)) for p in pdbs):
            problems.append(f"{name(w)}: no PodDisruptionBudget selects its pods")
    for service in SERVICES:
        if service not in seen:
            problems.append(f"no workload runs `hookline {service}`")
    ingress = seen.get("ingress")
    if ingress is not None and not any(
        h.get("spec", {}).get("scaleTargetRef", {}).get("name") == ingress["metadata"]["name"]
        for h in hpas
    ):
        problems.append(f"{name(ingress)}: no HorizontalPodAutoscaler scales it")
    return problems + check_exposure(resources)
