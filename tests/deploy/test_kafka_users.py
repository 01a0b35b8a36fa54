"""Least privilege on Kubernetes: the KafkaUsers are the ACL table's, generated from it, and
every workload connects over TLS and SASL as its own service's user, from Secrets."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from deploy import _kafka_users, _resources, checks
from shared.acls import grants

Resources = list[dict[str, Any]]


def strimzi_resources() -> Resources:
    files = ("ingress.yaml", "admin.yaml", "dispatcher.yaml", "delivery.yaml", "kafka.yaml")
    docs = [r for f in files for r in _resources.load((checks.BASE / f).read_text())]
    return docs + _resources.load(checks.USERS_FILE.read_text())


def find(resources: Resources, kind: str, name: str) -> dict[str, Any]:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


def container(resources: Resources, kind: str, name: str) -> dict[str, Any]:
    c: dict[str, Any] = find(resources, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return c


def env(resources: Resources, kind: str, name: str, key: str) -> dict[str, Any]:
    return next(e for e in container(resources, kind, name)["env"] if e["name"] == key)


def problems(resources: Resources, settings: dict[str, str] | None = None) -> list[str]:
    settings = checks.base_settings() if settings is None else settings
    return _kafka_users.check_kafka_users(
        resources, settings
    ) + _kafka_users.check_kafka_credentials(resources, settings)


def test_committed_users_file_is_what_the_acl_table_generates() -> None:
    # Fails when shared/acls.py changes and `python -m deploy.checks --write-users` was not run.
    assert checks.USERS_FILE.read_text() == checks.users_yaml(checks.base_settings())


def test_committed_users_and_workloads_keep_least_privilege() -> None:
    assert problems(strimzi_resources()) == []


def test_a_kafka_user_carries_its_services_grants_in_strimzis_terms() -> None:
    user = _kafka_users.kafka_user("delivery", prefix="hookline.", cluster="hookline")
    acls = user["spec"]["authorization"]["acls"]
    assert len(acls) == len(grants("delivery", "hookline."))
    assert {
        "resource": {"type": "topic", "name": "hookline.delivery-retry.", "patternType": "prefix"},
        "operations": ["Read", "Write"],
        "host": "*",
    } in acls
    assert {
        "resource": {"type": "group", "name": "hookline.delivery", "patternType": "prefix"},
        "operations": ["Read"],
        "host": "*",
    } in acls
    dispatcher = _kafka_users.kafka_user("dispatcher", prefix="p.", cluster="c")
    assert {
        "resource": {"type": "transactionalId", "name": "p.dispatcher-", "patternType": "prefix"},
        "operations": ["Write"],
        "host": "*",
    } in dispatcher["spec"]["authorization"]["acls"]


def _drop_operation(rs: Resources) -> None:
    acl = find(rs, "KafkaUser", "hookline-dispatcher")["spec"]["authorization"]["acls"][0]
    acl["operations"] = []


def _extra_grant(rs: Resources) -> None:
    find(rs, "KafkaUser", "hookline-ingress")["spec"]["authorization"]["acls"].append(
        {
            "resource": {"type": "topic", "name": "hookline.", "patternType": "prefix"},
            "operations": ["Read"],
        }
    )


def _no_admin_user(rs: Resources) -> None:
    rs.remove(find(rs, "KafkaUser", "hookline-admin"))


def _tls_client_auth(rs: Resources) -> None:
    find(rs, "KafkaUser", "hookline-delivery")["spec"]["authentication"]["type"] = "tls"


def _literal_password(rs: Resources) -> None:
    container(rs, "Deployment", "hookline-ingress")["env"].append(
        {"name": "HOOKLINE_KAFKA_SASL_PASSWORD", "value": "committed-by-mistake"}
    )


def _ingress_as_admin(rs: Resources) -> None:
    env(rs, "Deployment", "hookline-ingress", "HOOKLINE_KAFKA_SASL_USERNAME")["value"] = (
        "hookline-admin"
    )


def _password_of_another_user(rs: Resources) -> None:
    volumes = find(rs, "Deployment", "hookline-delivery")["spec"]["template"]["spec"]["volumes"]
    next(v for v in volumes if v["name"] == "kafka-user")["secret"]["secretName"] = "hookline-admin"


def _ca_from_elsewhere(rs: Resources) -> None:
    volumes = find(rs, "StatefulSet", "hookline-dispatcher")["spec"]["template"]["spec"]["volumes"]
    next(v for v in volumes if v["name"] == "kafka-ca")["secret"]["secretName"] = "my-ca"


def _password_file_not_mounted(rs: Resources) -> None:
    env(rs, "Deployment", "hookline-admin", "HOOKLINE_KAFKA_SASL_PASSWORD_FILE")["value"] = (
        "/tmp/password"
    )


def _no_username(rs: Resources) -> None:
    c = container(rs, "Deployment", "hookline-delivery")
    c["env"] = [e for e in c["env"] if e["name"] != "HOOKLINE_KAFKA_SASL_USERNAME"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _drop_operation,
            "KafkaUser/hookline-dispatcher: lacks allow Read on topic hookline.inbound",
        ),
        (_extra_grant, "KafkaUser/hookline-ingress: grants allow Read on topic hookline. (prefix"),
        (_no_admin_user, "no KafkaUser hookline-admin for `hookline admin`"),
        (_tls_client_auth, "KafkaUser/hookline-delivery: authentication tls, not scram-sha-512"),
        (_literal_password, "HOOKLINE_KAFKA_SASL_PASSWORD must come from a Secret"),
        (_ingress_as_admin, "shares the Kafka user hookline-admin with `hookline ingress`"),
        (_ingress_as_admin, "runs as hookline-admin, not hookline-ingress, its KafkaUser"),
        (_password_of_another_user, "the password comes from the Secret hookline-admin, not"),
        (_ca_from_elsewhere, "must be ca.crt of the Secret hookline-cluster-ca-cert"),
        (
            _password_file_not_mounted,
            "HOOKLINE_KAFKA_SASL_PASSWORD_FILE /tmp/password is no Secret",
        ),
        (_no_username, "HOOKLINE_KAFKA_SASL_USERNAME must name its user"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_kafka_check_reports_a_broken_promise(
    mutate: Callable[[Resources], None], expected: str
) -> None:
    resources = copy.deepcopy(strimzi_resources())
    mutate(resources)
    found = problems(resources)
    assert any(expected in p for p in found), found


def test_plaintext_to_kafka_is_refused() -> None:
    settings = {**checks.base_settings(), "HOOKLINE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    assert any("must speak SASL_SSL" in p for p in problems(strimzi_resources(), settings))
