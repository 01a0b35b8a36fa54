"""Checks of ``deploy/compose.yaml``: the Compose Specification's schema, then our promises."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from deploy._manifests import SECRET_READERS
from deploy._resources import ADMIN_PORT, INGRESS_INTERNAL_PORT

KAFKA_IMAGE = "apache/kafka:4.1.1"
# Each service and the port of its health routes.
PORTS = {
    "ingress": INGRESS_INTERNAL_PORT,
    "admin": ADMIN_PORT,
    "dispatcher": 8082,
    "delivery": 8083,
}
# Ports that must never face the internet: published on loopback, if at all.
INTERNAL_PORTS = {ADMIN_PORT: "the admin port", INGRESS_INTERNAL_PORT: "the ingress' internal port"}
SERVICES = tuple(PORTS)
EXPECTED = ("kafka", "topics", *SERVICES)


def load(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise ValueError("the compose file is not a mapping")
    return doc


def schema_problems(doc: dict[str, Any], schema_path: Path) -> list[str]:
    validator = jsonschema_rs.validator_for(json.loads(schema_path.read_text()))
    return [
        f"/{'/'.join(str(p) for p in err.instance_path)}: {err.message}"
        for err in validator.iter_errors(doc)
    ]


def _seconds(duration: object) -> float:
    total = 0.0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    for number, unit in re.findall(r"([\d.]+)(ms|h|m|s)", str(duration)):
        total += float(number) * units[unit]
    return total


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    """A service's environment as a mapping (Compose also takes a list of ``KEY=VALUE``)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return dict(env)


def check_compose(doc: dict[str, Any]) -> list[str]:
    """Kafka (the official image, KRaft), a topics step, the four services, wired together."""
    services: dict[str, Any] = doc.get("services") or {}
    problems = [f"no service named {name}" for name in EXPECTED if name not in services]
    for name, service in services.items():
        problems.extend(
            f"{name}: depends on {dep}, which is not a service"
            for dep in service.get("depends_on") or {}
            if dep not in services
        )
    kafka = services.get("kafka") or {}
    if kafka and kafka.get("image") != KAFKA_IMAGE:
        problems.append(f"kafka: image must be {KAFKA_IMAGE} (has {kafka.get('image')})")
    if kafka and "controller" not in str(
        (kafka.get("environment") or {}).get("KAFKA_PROCESS_ROLES")
    ):
        problems.append("kafka: KAFKA_PROCESS_ROLES must include controller (KRaft)")
    topics = services.get("topics") or {}
    if topics and topics.get("command") != ["topics"]:
        problems.append("topics: must run `hookline topics`")
    for name, service in services.items():
        command = (service.get("command") or [""])[0]
        problems.extend(
            f"{name}: `hookline {command}` must not hold {setting} "
            f"(only {', '.join(sorted(readers))})"
            for setting, readers in SECRET_READERS.items()
            if setting in _environment(service) and command not in readers
        )
    for name in SERVICES:
        service = services.get(name)
        if not service:
            continue
        if service.get("command") != [name]:
            problems.append(f"{name}: must run `hookline {name}` (has {service.get('command')})")
        env = _environment(service)
        bootstrap = str(env.get("HOOKLINE_KAFKA_BOOTSTRAP_SERVERS", ""))
        host = bootstrap.split(":")[0]
        if host not in services:
            problems.append(
                f"{name}: HOOKLINE_KAFKA_BOOTSTRAP_SERVERS {bootstrap!r} names no service"
            )
        condition = ((service.get("depends_on") or {}).get("topics") or {}).get("condition")
        if condition != "service_completed_successfully":
            problems.append(f"{name}: must start after the topics step completed")
        if service.get("read_only") is not True:
            problems.append(f"{name}: the root filesystem must be read-only")
        probe = f"http://127.0.0.1:{PORTS[name]}/readyz"
        if probe not in str((service.get("healthcheck") or {}).get("test")):
            problems.append(f"{name}: the healthcheck must GET {probe}")
        grace = float(env.get("HOOKLINE_SHUTDOWN_GRACE", 20))
        if _seconds(service.get("stop_grace_period", "10s")) <= grace:
            problems.append(
                f"{name}: stop_grace_period must exceed HOOKLINE_SHUTDOWN_GRACE ({grace:g} s)"
            )
        for port in service.get("ports") or []:
            text = str(port)
            for internal, what in INTERNAL_PORTS.items():
                published = text.endswith(f":{internal}") or text == str(internal)
                if published and not text.startswith(("127.0.0.1:", "[::1]:")):
                    problems.append(f"{name}: {what} may be published on loopback only ({text})")
    return problems
