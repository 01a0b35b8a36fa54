"""The deployment's promises beyond the schemas: workloads, exposure, secrets (compose and
the Dockerfile: ``test_compose_and_image_checks.py``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy import _manifests, _resources, checks

Resources = list[dict[str, Any]]


def base_resources() -> Resources:
    """The base's workloads and policies, and the example overlay's public route."""
    files = (
        "serviceaccount.yaml",
        "ingress.yaml",
        "admin.yaml",
        "dispatcher.yaml",
        "delivery.yaml",
        "networkpolicy.yaml",
    )
    route = checks.K8S / "overlays" / "example" / "route.yaml"
    return [
        r
        for path in (*(checks.BASE / f for f in files), route)
        for r in _resources.load(path.read_text())
    ]


def find(resources: Resources, kind: str, name: str) -> dict[str, Any]:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


def container(resources: Resources, kind: str, name: str) -> dict[str, Any]:
    c: dict[str, Any] = find(resources, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return c


def test_committed_workloads_keep_their_promises():
    assert _manifests.check_workloads(base_resources()) == []


@pytest.mark.parametrize(
    ("path", "path_type"),
    [("/webhooks", "Prefix"), ("/webhooks/", "Prefix"), ("/webhooks/gh-main/github", "Exact")],
)
def test_routes_for_webhooks_alone_pass(path: str, path_type: str) -> None:
    resources = copy.deepcopy(base_resources())
    _route(path, path_type)(resources)
    _http_route([{"path": {"type": "PathPrefix", "value": path}}])(resources)
    assert _manifests.check_workloads(resources) == []


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
    env = container(rs, "Deployment", "hookline-admin")["env"]
    token = next(e for e in env if e["name"] == "HOOKLINE_ADMIN_TOKEN")
    token.pop("valueFrom")
    token["value"] = "committed-by-mistake"


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "hookline-secrets", "key": key}}}


def _token_in_ingress(rs: Resources) -> None:
    container(rs, "Deployment", "hookline-ingress")["env"].append(
        _secret_env("HOOKLINE_ADMIN_TOKEN", "admin-token")
    )


def _secret_key_in_dispatcher(rs: Resources) -> None:
    container(rs, "StatefulSet", "hookline-dispatcher")["env"].append(
        _secret_env("HOOKLINE_SECRET_KEY", "secret-key")
    )


def _token_in_config_map(rs: Resources) -> None:
    rs.append(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "hookline-config-abc123"},
            "data": {"HOOKLINE_ADMIN_TOKEN": "committed-by-mistake"},
        }
    )


def _admin_load_balancer(rs: Resources) -> None:
    find(rs, "Service", "hookline-admin")["spec"]["type"] = "LoadBalancer"


def _admin_node_port_by_another_name(rs: Resources) -> None:
    # Any Service that selects the admin pods is an admin Service, whatever its port.
    service = copy.deepcopy(find(rs, "Service", "hookline-admin"))
    service["metadata"]["name"] = "debug"
    service["spec"]["type"] = "NodePort"
    service["spec"]["ports"] = [{"name": "http", "port": 9000, "targetPort": 8081}]
    rs.append(service)


def _admin_service_selects_ingress(rs: Resources) -> None:
    # The layout before the admin API had a process of its own.
    selector = find(rs, "Service", "hookline-admin")["spec"]["selector"]
    selector["app.kubernetes.io/component"] = "ingress"


def _admin_policy_open(rs: Resources) -> None:
    find(rs, "NetworkPolicy", "hookline-admin")["spec"]["ingress"][0].pop("from")


def _admin_policy_ip_block(rs: Resources) -> None:
    rule = find(rs, "NetworkPolicy", "hookline-admin")["spec"]["ingress"][0]
    rule["from"] = [{"ipBlock": {"cidr": "0.0.0.0/0"}}]


def _allow_all_policy(rs: Resources) -> None:
    rs.append(
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-all"},
            "spec": {"podSelector": {}, "ingress": [{}]},
        }
    )


def _no_admin_policy(rs: Resources) -> None:
    rs.remove(find(rs, "NetworkPolicy", "hookline-admin"))


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


def _no_admin(rs: Resources) -> None:
    rs.remove(find(rs, "Deployment", "hookline-admin"))


def _admin_probe_elsewhere(rs: Resources) -> None:
    container(rs, "Deployment", "hookline-admin")["livenessProbe"]["httpGet"]["path"] = "/"


def _ingress_probe_on_public_port(rs: Resources) -> None:
    container(rs, "Deployment", "hookline-ingress")["readinessProbe"]["httpGet"]["port"] = "http"


def _ingress_scraped_on_public_port(rs: Resources) -> None:
    template = find(rs, "Deployment", "hookline-ingress")["spec"]["template"]
    template["metadata"]["annotations"]["prometheus.io/port"] = "8080"


def _internal_port_in_service(rs: Resources) -> None:
    ports = find(rs, "Service", "hookline-ingress")["spec"]["ports"]
    ports.append({"name": "metrics", "port": 9090, "targetPort": "internal"})


def _internal_port_from_everywhere(rs: Resources) -> None:
    find(rs, "NetworkPolicy", "hookline-ingress")["spec"]["ingress"][1].pop("from")


def _public_rule_admits_every_port(rs: Resources) -> None:
    # The webhook rule without its port list admits the internal port from anywhere too.
    find(rs, "NetworkPolicy", "hookline-ingress")["spec"]["ingress"][0].pop("ports")


def _route(path: str, path_type: str = "Prefix", service: str = "hookline-ingress") -> Any:
    def mutate(rs: Resources) -> None:
        route = find(rs, "Ingress", "hookline-webhooks")
        entry = route["spec"]["rules"][0]["http"]["paths"][0]
        entry.update(path=path, pathType=path_type)
        entry["backend"]["service"]["name"] = service

    return mutate


def _route_default_backend(rs: Resources) -> None:
    route = find(rs, "Ingress", "hookline-webhooks")
    route["spec"]["defaultBackend"] = {
        "service": {"name": "hookline-ingress", "port": {"number": 80}}
    }


def _http_route(matches: list[dict[str, Any]] | None) -> Any:
    def mutate(rs: Resources) -> None:
        rule: dict[str, Any] = {"backendRefs": [{"name": "hookline-ingress", "port": 80}]}
        if matches is not None:
            rule["matches"] = matches
        rs.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "hooks"},
                "spec": {"parentRefs": [{"name": "public"}], "rules": [rule]},
            }
        )

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_pop_readiness, "readinessProbe must GET /readyz"),
        (_short_grace, "terminationGracePeriodSeconds 20 must exceed"),
        (_writable_root, "readOnlyRootFilesystem must be true"),
        (_literal_token, "HOOKLINE_ADMIN_TOKEN must come from a Secret"),
        (_token_in_ingress, "`hookline ingress` must not hold HOOKLINE_ADMIN_TOKEN (only admin)"),
        (_secret_key_in_dispatcher, "`hookline dispatcher` must not hold HOOKLINE_SECRET_KEY"),
        (_token_in_config_map, "HOOKLINE_ADMIN_TOKEN must come from a Secret, not a ConfigMap"),
        (_admin_load_balancer, "exposes the admin API through a LoadBalancer"),
        (
            _admin_node_port_by_another_name,
            "Service/debug: exposes the admin API through a NodePort",
        ),
        (_admin_service_selects_ingress, "carries the admin port but selects no `hookline admin`"),
        (_admin_route, "routes to the admin Service hookline-admin"),
        (_admin_policy_open, "NetworkPolicy/hookline-admin: admits the admin port from everywhere"),
        (_admin_policy_ip_block, "admits the admin port from an ipBlock"),
        (_allow_all_policy, "NetworkPolicy/allow-all: admits the admin port from everywhere"),
        (_no_admin_policy, "no NetworkPolicy keeps the admin port cluster-internal"),
        (_committed_secret, "a Secret must never be committed"),
        (_no_pdb, "no PodDisruptionBudget selects its pods"),
        (_no_hpa, "no HorizontalPodAutoscaler scales it"),
        (_no_delivery, "no workload runs `hookline delivery`"),
        (_no_admin, "no workload runs `hookline admin`"),
        (_admin_probe_elsewhere, "hookline-admin container admin: livenessProbe must GET /healthz"),
        (
            _ingress_probe_on_public_port,
            "readinessProbe must use the internal port 8084 (has http)",
        ),
        (_ingress_scraped_on_public_port, "prometheus.io/port must be the internal port 8084"),
        (_internal_port_in_service, "Service/hookline-ingress: carries the ingress' internal port"),
        (_internal_port_from_everywhere, "admits the ingress' internal port from everywhere"),
        (_public_rule_admits_every_port, "admits the ingress' internal port from everywhere"),
        (_route("/"), "routes / (Prefix), wider than the public /webhooks prefix"),
        (_route("/metrics", "Exact"), "routes /metrics (Exact), wider than the public /webhooks"),
        (_route("/webhook"), "routes /webhook (Prefix), wider"),
        (_route("/webhooks/.*", "ImplementationSpecific"), "(ImplementationSpecific), wider"),
        (_route("/webhooks", service="hookline-dispatcher"), "to Service hookline-dispatcher, not"),
        (_route_default_backend, "Ingress/hookline-webhooks: routes / (Prefix), wider"),
        (_http_route(None), "HTTPRoute/hooks: routes / (PathPrefix), wider"),
        (
            _http_route([{"path": {"type": "RegularExpression", "value": "/webhooks/.*"}}]),
            "HTTPRoute/hooks: routes /webhooks/.* (RegularExpression), wider",
        ),
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


def test_secret_settings_go_to_the_services_whose_code_reads_them():
    # SECRET_READERS is what the manifest and compose checks enforce: it must be what the
    # services read, so a service that starts reading a secret fails here first.
    services = Path(checks.DEPLOY.parent / "services")
    readers = {
        setting: frozenset(
            package.name
            for package in services.iterdir()
            if package.is_dir()
            and any(
                setting.removeprefix("HOOKLINE_").lower() in f.read_text()
                for f in package.rglob("*.py")
            )
        )
        for setting in _manifests.SECRET_READERS
    }
    assert readers == _manifests.SECRET_READERS
