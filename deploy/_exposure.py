"""What may be reached from where: the admin API and the ingress' internal port stay inside
the cluster, and the public route carries webhooks alone.

Each check takes the rendered resources and returns problems, one line each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from deploy._resources import (
    ADMIN_PORT,
    INGRESS_INTERNAL_PORT,
    INGRESS_PORT,
    Resource,
    name,
    pod_labels,
    pod_spec,
    policy_selects,
    service_selects,
    workloads_running,
)

# The one public path: the webhook routes (/webhooks/{id}[/{provider}]).
PUBLIC_PREFIX = "/webhooks"


def check_exposure(resources: list[Resource]) -> list[str]:
    return (
        check_admin_exposure(resources)
        + check_internal_port(resources)
        + check_public_routes(resources)
    )


def _exposes_admin(service: Resource) -> bool:
    for port in service.get("spec", {}).get("ports") or []:
        if ADMIN_PORT in (port.get("port"), port.get("targetPort")) or "admin" in (
            port.get("name"),
            port.get("targetPort"),
        ):
            return True
    return False


def _admits(rule: Resource, port: int, port_name: str) -> bool:
    ports = rule.get("ports") or []
    # No ports listed: the rule admits every port.
    return not ports or any(p.get("port") in (port, port_name) for p in ports)


def _policies_for(resources: list[Resource], labels: dict[str, str]) -> list[Resource]:
    return [
        p
        for p in resources
        if p.get("kind") == "NetworkPolicy"
        and policy_selects(p.get("spec", {}).get("podSelector") or {}, labels)
        and "Ingress" in (p.get("spec", {}).get("policyTypes") or ["Ingress"])
    ]


def _open_rules(policies: list[Resource], port: int, port_name: str, what: str) -> list[str]:
    """Rules that admit ``port`` from everyone or from an ipBlock (outside the cluster)."""
    problems = []
    for policy in policies:
        for rule in policy.get("spec", {}).get("ingress") or []:
            if not _admits(rule, port, port_name):
                continue
            peers = rule.get("from") or []
            if not peers:
                problems.append(f"{name(policy)}: admits {what} from everywhere")
            elif any("ipBlock" in peer for peer in peers):
                problems.append(f"{name(policy)}: admits {what} from an ipBlock")
    return problems


def check_admin_exposure(resources: list[Resource]) -> list[str]:
    """The admin API is reachable only inside the cluster, never routed from outside.

    An admin Service is one that selects the pods of `hookline admin` or carries the admin
    port: it must be a ClusterIP Service with that port alone, select the admin pods (not
    another service's), and no Ingress may name it. A NetworkPolicy must select the admin
    pods, and every rule of those policies that admits the admin port must name its peers:
    pods or namespaces of the cluster, never an ipBlock and never everyone.
    """
    problems = []
    admin_pods = [pod_labels(w) for w in workloads_running(resources, "admin")]
    admin_services = set()
    for r in resources:
        if r.get("kind") != "Service":
            continue
        selects_admin = any(service_selects(r, labels) for labels in admin_pods)
        if not (selects_admin or _exposes_admin(r)):
            continue
        admin_services.add(r["metadata"]["name"])
        kind = r.get("spec", {}).get("type", "ClusterIP")
        if kind != "ClusterIP":
            problems.append(f"{name(r)}: exposes the admin API through a {kind} Service")
        if len(r.get("spec", {}).get("ports") or []) > 1:
            problems.append(f"{name(r)}: the admin port needs a Service of its own")
        if admin_pods and not selects_admin:
            problems.append(
                f"{name(r)}: carries the admin port but selects no `hookline admin` pods"
            )
    for r in resources:
        if r.get("kind") not in ("Ingress", "HTTPRoute"):
            continue
        text = json.dumps(r.get("spec", {}))
        problems.extend(
            f"{name(r)}: routes to the admin Service {service}"
            for service in sorted(admin_services)
            if f'"name": "{service}"' in text
        )
    for workload in workloads_running(resources, "admin"):
        policies = _policies_for(resources, pod_labels(workload))
        if not policies:
            problems.append(
                f"{name(workload)}: no NetworkPolicy keeps the admin port cluster-internal"
            )
        problems += _open_rules(policies, ADMIN_PORT, "admin", "the admin port")
    return problems


def _port_number(container: Resource, port: Any) -> Any:
    """A probe's or a Service's port: a number, or the number a named container port has."""
    for declared in container.get("ports") or []:
        if port == declared.get("name"):
            return declared.get("containerPort")
    return port


def check_internal_port(resources: list[Resource]) -> list[str]:
    """The ingress' health and metrics are on its internal port, which stays in the cluster.

    Its probes and its scrape annotation name the internal port (the public one answers
    404 there), no Service carries it, and the NetworkPolicies admit it only from named
    peers of the cluster.
    """
    problems = []
    for workload in workloads_running(resources, "ingress"):
        annotations = workload["spec"]["template"].get("metadata", {}).get("annotations") or {}
        if str(annotations.get("prometheus.io/port")) != str(INGRESS_INTERNAL_PORT):
            problems.append(
                f"{name(workload)}: prometheus.io/port must be the internal port "
                f"{INGRESS_INTERNAL_PORT} (has {annotations.get('prometheus.io/port')})"
            )
        for c in pod_spec(workload).get("containers") or []:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = (c.get(probe) or {}).get("httpGet", {}).get("port")
                if probe in c and _port_number(c, port) != INGRESS_INTERNAL_PORT:
                    problems.append(
                        f"{name(workload)} container {c.get('name')}: {probe} must use the "
                        f"internal port {INGRESS_INTERNAL_PORT} (has {port})"
                    )
        labels = pod_labels(workload)
        containers = pod_spec(workload).get("containers") or []
        for service in resources:
            if service.get("kind") != "Service" or not service_selects(service, labels):
                continue
            for port in service.get("spec", {}).get("ports") or []:
                targets = {
                    _port_number(c, port.get("targetPort", port.get("port"))) for c in containers
                }
                if INGRESS_INTERNAL_PORT in targets:
                    problems.append(f"{name(service)}: carries the ingress' internal port")
        problems += _open_rules(
            _policies_for(resources, labels),
            INGRESS_INTERNAL_PORT,
            "internal",
            "the ingress' internal port",
        )
    return problems


def _public_services(resources: list[Resource]) -> set[str]:
    """The Services that carry the ingress pods' public port."""
    found = set()
    for workload in workloads_running(resources, "ingress"):
        containers = pod_spec(workload).get("containers") or []
        for service in resources:
            if service.get("kind") != "Service":
                continue
            if not service_selects(service, pod_labels(workload)):
                continue
            for port in service.get("spec", {}).get("ports") or []:
                target = port.get("targetPort", port.get("port"))
                if INGRESS_PORT in {_port_number(c, target) for c in containers}:
                    found.add(service["metadata"]["name"])
    return found


def _within_webhooks(path: str | None, kind: str | None) -> bool:
    if kind not in ("Prefix", "Exact", "PathPrefix"):
        return False  # ImplementationSpecific, RegularExpression: anything may match
    value = (path or "/").rstrip("/")
    return value == PUBLIC_PREFIX or value.startswith(PUBLIC_PREFIX + "/")


def _routes(route: Resource) -> Iterator[tuple[str | None, str | None, list[str]]]:
    """(path, path type, backend Services) of an Ingress or an HTTPRoute."""
    spec = route.get("spec") or {}
    if route.get("kind") == "Ingress":
        default = (spec.get("defaultBackend") or {}).get("service", {}).get("name")
        if default:
            yield "/", "Prefix", [default]
        for rule in spec.get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                backend = (path.get("backend") or {}).get("service", {}).get("name")
                yield path.get("path"), path.get("pathType"), [backend] if backend else []
        return
    for rule in spec.get("rules") or []:
        backends = [ref.get("name") for ref in rule.get("backendRefs") or []]
        # A rule without matches matches every path (a "/" prefix).
        for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            path = match.get("path") or {"type": "PathPrefix", "value": "/"}
            yield path.get("value"), path.get("type", "PathPrefix"), backends


def check_public_routes(resources: list[Resource]) -> list[str]:
    """Every Ingress and HTTPRoute sends ``/webhooks`` (or paths under it) to the ingress'
    public Service, and nothing else: no "/" route, no regular expression, no other Service
    (health, metrics and the admin API are never public)."""
    problems = []
    public = _public_services(resources)
    for route in resources:
        if route.get("kind") not in ("Ingress", "HTTPRoute"):
            continue
        for path, kind, backends in _routes(route):
            if not _within_webhooks(path, kind):
                problems.append(
                    f"{name(route)}: routes {path or '/'} ({kind}), wider than the public "
                    f"{PUBLIC_PREFIX} prefix"
                )
            problems.extend(
                f"{name(route)}: routes {path} to Service {backend}, not the webhook ingress"
                for backend in backends
                if backend not in public
            )
    return problems
