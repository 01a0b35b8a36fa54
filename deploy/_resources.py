"""Reading rendered Kubernetes resources: the small helpers every manifest check shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

Resource = dict[str, Any]

ADMIN_PORT = 8081
INGRESS_PORT = 8080
# The ingress' /healthz, /readyz and /metrics (HOOKLINE_INGRESS_INTERNAL_PORT): never public.
INGRESS_INTERNAL_PORT = 8084
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


def load(text: str) -> list[Resource]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def name(r: Mapping[str, Any]) -> str:
    return f"{r.get('kind')}/{r.get('metadata', {}).get('name')}"


def pod_spec(r: Resource) -> Resource:
    spec: Resource = r.get("spec", {}).get("template", {}).get("spec", {})
    return spec


def pod_labels(r: Resource) -> dict[str, str]:
    labels: dict[str, str] = (
        r.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    )
    return labels


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    wanted = selector.get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def command(c: Resource) -> str:
    """The ``hookline`` subcommand a container runs (its first argument)."""
    return str((c.get("args") or c.get("command") or [""])[0])


def service_selects(service: Resource, labels: Mapping[str, str]) -> bool:
    wanted = service.get("spec", {}).get("selector") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def policy_selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A NetworkPolicy's podSelector: empty selects every pod of the namespace."""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    return selects(selector, labels) or bool(selector.get("matchExpressions"))


def workload_kinds_running(resources: list[Resource], services: tuple[str, ...]) -> list[Resource]:
    """The workloads (Deployments, StatefulSets, Jobs) with a container that runs one of
    ``hookline <service>``."""
    return [
        r
        for r in resources
        if r.get("kind") in WORKLOAD_KINDS
        and any(command(c) in services for c in pod_spec(r).get("containers") or [])
    ]


def workloads_running(resources: list[Resource], service: str) -> list[Resource]:
    """The workloads whose containers run ``hookline <service>``."""
    return workload_kinds_running(resources, (service,))
