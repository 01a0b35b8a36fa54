"""The Grafana dashboard validates, and every panel's query names metrics the services export."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from deploy import _dashboard as dashboard
from deploy._compose import load as load_compose
from deploy.checks import DEPLOY

# The panels, each by the metric its query must read.
REQUIRED = {
    "intake rate by provider and outcome": "hookline_ingress_requests_total",
    "202 latency": "hookline_ingress_request_seconds_bucket",
    "dispatch lag": "hookline_dispatcher_lag_seconds_bucket",
    "delivery success rate": "hookline_delivery_attempts_total",
    "delivery latency": "hookline_delivery_latency_seconds_bucket",
    "retries by tier": "hookline_delivery_retries_total",
    "dead letters": "hookline_dead_letters_total",
    "breaker states": "hookline_delivery_breakers",
}


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    return dashboard.exported()


def test_the_dashboard_is_well_formed_on_the_provisioned_prometheus():
    doc = dashboard.load()
    assert dashboard.structure_problems(doc, dashboard.provisioned_uids()) == []


def test_every_query_names_exported_metrics_and_their_labels(exported):
    assert dashboard.metric_problems(dashboard.load(), exported) == []


def test_the_dashboard_shows_what_the_platform_team_asked_for():
    named = {
        m for _, expr in dashboard.queries(dashboard.load()) for m in dashboard.selectors(expr)[0]
    }
    missing = {what for what, metric in REQUIRED.items() if metric not in named}
    assert not missing


def test_exported_names_carry_the_suffixes_prometheus_scrapes(exported):
    assert {
        "hookline_delivery_latency_seconds_bucket",
        "hookline_delivery_latency_seconds_count",
    } <= set(exported)
    assert "hookline_ingress_requests_total" in exported
    assert "hookline_ingress_requests" not in exported, "a counter is scraped with _total"
    assert "le" in exported["hookline_dispatcher_lag_seconds_bucket"]
    assert {"provider", "outcome"} <= exported["hookline_ingress_requests_total"]


@pytest.mark.parametrize(
    ("expr", "metrics", "grouped"),
    [
        (
            "sum by (provider, outcome) (rate(hookline_ingress_requests_total[$__rate_interval]))",
            {"hookline_ingress_requests_total": set()},
            {"provider", "outcome"},
        ),
        (
            'histogram_quantile(0.99, sum(rate(a_seconds_bucket{job="x", le!="+Inf"}[5m])) by (le))',
            {"a_seconds_bucket": {"job", "le"}},
            {"le"},
        ),
        (
            'sum(rate(x_total{outcome="succeeded"}[1m])) / ignoring(outcome) sum(rate(x_total[1m] offset 1h))',
            {"x_total": {"outcome"}},
            {"outcome"},
        ),
        (
            'up{job=~"hookline-.*"} == bool 1 and on (instance) y',
            {"up": {"job"}, "y": set()},
            {"instance"},
        ),
        ("1e3 * z", {"z": set()}, set()),
    ],
)
def test_queries_are_read_for_their_metrics_and_labels(expr, metrics, grouped):
    assert dashboard.selectors(expr) == (metrics, grouped)


def _first_target(doc: dict[str, Any]) -> dict[str, Any]:
    target: dict[str, Any] = next(p for p in dashboard.panels(doc) if p.get("targets"))["targets"][
        0
    ]
    return target


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("rate(hookline_delivery_attempts[5m])", "hookline_delivery_attempts is not"),
        ("rate(hookline_delivery_latency_seconds[5m])", "hookline_delivery_latency_seconds is not"),
        ('hookline_delivery_attempts_total{tier="2"}', "has no label 'tier'"),
        ("sum by (subscription) (hookline_delivery_breakers)", "has the label 'subscription'"),
        ("sum(rate(hookline_delivery_attempts_total[5m])", "unclosed"),
    ],
)
def test_a_query_the_services_cannot_answer_is_a_problem(exported, expr, complaint):
    doc = copy.deepcopy(dashboard.load())
    _first_target(doc)["expr"] = expr
    problems = dashboard.metric_problems(doc, exported) + dashboard.structure_problems(
        doc, dashboard.provisioned_uids()
    )
    assert any(complaint in p for p in problems), problems


def test_overlapping_panels_and_foreign_datasources_are_problems():
    doc = copy.deepcopy(dashboard.load())
    movable = [p for p in dashboard.panels(doc) if p.get("targets")]
    movable[1]["gridPos"] = dict(movable[0]["gridPos"])
    movable[2]["datasource"] = {"type": "prometheus", "uid": "elsewhere"}
    problems = dashboard.structure_problems(doc, dashboard.provisioned_uids())
    assert any("overlaps" in p for p in problems)
    assert any("'elsewhere' is not a provisioned Prometheus" in p for p in problems)


def test_compose_runs_prometheus_grafana_and_jaeger_with_the_dashboard_provisioned():
    services = load_compose((DEPLOY / "compose.yaml").read_text())["services"]
    assert {"prometheus", "grafana", "jaeger"} <= set(services)
    mounts = " ".join(services["grafana"]["volumes"])
    assert "./grafana/dashboards:" in mounts and "./grafana/provisioning:" in mounts
    assert "./prometheus/prometheus.yml:" in " ".join(services["prometheus"]["volumes"])
