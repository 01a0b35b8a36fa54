"""Checks of the Grafana dashboard: its structure, and that every query names real metrics.

``deploy/grafana/dashboards/hookline.json`` is provisioned by the compose file. Each
panel must sit on the 24-column grid without overlapping another, name the provisioned
Prometheus data source, and carry targets with a PromQL ``expr`` and unique ``refId``s.
Every metric a query names must be one the services export (read from the metric
registry once the four services' modules are imported, histogram and counter suffixes
included), and every label it matches or groups by one that metric has.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hookline.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "hookline.yaml"
# Importing each service's entry point registers every metric it exports.
SERVICE_MODULES = (
    "services.ingress.main",
    "services.admin.main",
    "services.dispatcher.main",
    "services.delivery.main",
)
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"job", "instance"})
GRID_COLUMNS = 24

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "atan2", "inf", "nan", "start", "end"}
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_SELECTOR = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?")
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path.name}: not a JSON object")
    return doc


def provisioned_uids(path: Path = DATASOURCES) -> dict[str, str]:
    """uid → type of each provisioned data source."""
    doc = yaml.safe_load(path.read_text()) or {}
    return {str(d["uid"]): str(d["type"]) for d in doc.get("datasources") or [] if "uid" in d}


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in doc.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def queries(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every target."""
    for panel in panels(doc):
        for target in panel.get("targets") or []:
            yield str(panel.get("title")), str(target.get("expr", ""))


def structure_problems(doc: dict[str, Any], datasources: dict[str, str]) -> list[str]:
    problems = [f"missing {key!r}" for key in ("uid", "title", "panels") if not doc.get(key)]
    if not isinstance(doc.get("schemaVersion"), int):
        problems.append("schemaVersion must be an integer")
    ids: set[int] = set()
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(doc):
        title = panel.get("title") or f"panel {panel.get('id')}"
        if not panel.get("title"):
            problems.append(f"{title}: no title")
        if not isinstance(panel.get("id"), int) or panel["id"] in ids:
            problems.append(f"{title}: id must be a unique integer")
        else:
            ids.add(panel["id"])
        if not panel.get("type"):
            problems.append(f"{title}: no type")
        problems.extend(f"{title}: {p}" for p in _grid(panel, title, cells))
        if panel.get("type") == "row":
            continue
        source = str((panel.get("datasource") or {}).get("uid"))
        if datasources.get(source) != "prometheus":
            problems.append(f"{title}: datasource {source!r} is not a provisioned Prometheus")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{title}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            problems.append(f"{title}: each target needs a unique refId")
        for target in targets:
            expr = str(target.get("expr") or "")
            problems.extend([f"{title}: a target has no expr"] if not expr else _balanced(expr))
    return problems


def _grid(panel: dict[str, Any], title: str, cells: dict[tuple[int, int], str]) -> list[str]:
    pos = panel.get("gridPos") or {}
    try:
        x, y, w, h = (int(pos[k]) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        return ["gridPos needs integer x, y, w and h"]
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > GRID_COLUMNS:
        return [f"gridPos {pos} is off the {GRID_COLUMNS}-column grid"]
    for cx in range(x, x + w):
        for cy in range(y, y + h):
            other = cells.setdefault((cx, cy), title)
            if other != title:
                return [f"overlaps {other!r}"]
    return []


def _balanced(expr: str) -> list[str]:
    text = _STRING.sub('""', expr)
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    for char in text:
        if char in depth:
            depth[char] += 1
        elif char in closing:
            depth[closing[char]] -= 1
            if depth[closing[char]] < 0:
                return [f"unbalanced {char!r} in {expr!r}"]
    return [f"unclosed {k!r} in {expr!r}" for k, v in depth.items() if v]


def selectors(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The metrics ``expr`` names, each with the labels it matches on, and the labels it
    groups or joins by."""
    text = _VARIABLE.sub("", _STRING.sub('""', expr))
    grouped: set[str] = set()
    for match in _GROUPING.finditer(text):
        grouped.update(label.strip() for label in match.group(2).split(",") if label.strip())
    text = _RANGE.sub("", _GROUPING.sub(" ", text))
    metrics: dict[str, set[str]] = {}
    for match in _SELECTOR.finditer(text):
        name, matchers, call = match.group(1), match.group(2), match.group(3)
        if call and not matchers:
            continue  # a function or an aggregation
        if name in _KEYWORDS:
            continue
        metrics.setdefault(name, set()).update(_MATCHER_LABEL.findall(matchers or ""))
    return metrics, grouped


def exported(modules: Iterable[str] = SERVICE_MODULES) -> dict[str, frozenset[str]]:
    """Every sample name the services export → the labels it carries."""
    from prometheus_client import REGISTRY

    for module in modules:
        importlib.import_module(module)
    names: dict[str, frozenset[str]] = {}
    collectors = REGISTRY._names_to_collectors
    for family in REGISTRY.collect():
        collector = collectors.get(family.name) or collectors.get(f"{family.name}_total")
        labels = frozenset(getattr(collector, "_labelnames", ()) or ())
        labels |= {label for sample in family.samples for label in sample.labels}
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"),
            "info": ("_info",),
        }.get(family.type, ("",))
        for suffix in suffixes:
            names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def metric_problems(doc: dict[str, Any], names: dict[str, frozenset[str]]) -> list[str]:
    problems = []
    for title, expr in queries(doc):
        metrics, grouped = selectors(expr)
        if not metrics:
            problems.append(f"{title}: {expr!r} names no metric")
        known: set[str] = set(TARGET_LABELS)
        for metric, labels in metrics.items():
            if metric not in names:
                problems.append(f"{title}: {metric} is not a metric the services export")
                continue
            known |= names[metric]
            problems.extend(
                f"{title}: {metric} has no label {label!r}"
                for label in sorted(labels - names[metric] - TARGET_LABELS)
            )
        problems.extend(
            f"{title}: no metric of {expr!r} has the label {label!r}"
            for label in sorted(grouped - known)
            if all(m in names for m in metrics)
        )
    return problems


def check_dashboard(path: Path = DASHBOARD) -> list[tuple[str, list[str]]]:
    """The sections ``make lint`` reports for the dashboard."""
    label = path.relative_to(DEPLOY.parent)
    try:
        doc = load(path)
    except (OSError, ValueError) as exc:
        return [(f"{label} parses", [str(exc)])]
    return [
        (f"{label} structure", structure_problems(doc, provisioned_uids())),
        (f"{label} queries name exported metrics", metric_problems(doc, exported())),
    ]
