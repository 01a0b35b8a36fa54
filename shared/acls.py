"""Least privilege per service: the Kafka ACLs each hookline service needs, as data.

One table serves the local secure broker (which creates these ACLs), ``hookline
acls --prefix P`` (which prints them as ``kafka-acls.sh`` commands), the table in
``docs/deploy.md`` (a test keeps the two equal) and the start-time check of
:mod:`shared.kafka_access` (which asks the broker whether each grant holds).

What each service does, read from its code:

- ingress: writes ``inbound``; reads ``config`` (its config view, no group).
- dispatcher: reads ``inbound`` in group ``<P>dispatcher`` and writes runs
  (``workflow-commands``), ``workflow-events``, its ledger ``dispatcher-runs``
  (which it also reads back) and ``dlq`` inside transactions ``<P>dispatcher-<replica>``;
  the local engine (``HOOKLINE_ENGINE=local``, in the same process) reads
  ``workflow-commands`` in group ``<P>engine`` and writes ``workflow-events`` and
  ``dlq`` in transactions ``<P>engine-<replica>``; both read ``config``.
- delivery: reads ``workflow-events`` and the retry tiers in groups ``<P>delivery``
  and ``<P>delivery.<n>``; writes ``delivery-attempts``, the retry tiers, ``dlq``,
  ``config`` (the event that disables a failing subscription) and ``workflow-events``
  (its operational events); reads and writes ``delivery-holds``.
- admin: reads and writes ``config``; reads ``delivery-attempts``, ``inbound``,
  ``workflow-events`` and ``dlq`` into its operations view; writes ``inbound``
  (replays), ``workflow-events`` (the publish-event API), the retry tiers (redelivery,
  recovery) and, for a dead letter's retry, the topic it came from (``inbound``,
  ``workflow-commands``, ``workflow-events``, a retry tier, ``config``); reads and
  writes ``operations`` (the state of its jobs) and ``audit`` (its trail of who changed
  what, and the view that answers ``GET /v1/audit``). It joins no consumer group.
- topics: the operator step ``hookline topics``: creates the topics and compares
  their settings. Services never create topics under least privilege.

Kafka 3.0 and later let a producer that may write a topic be idempotent without
IdempotentWrite on the cluster (KIP-679), so no service has a cluster grant. Read,
Write and the others imply Describe.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

SERVICES = ("ingress", "dispatcher", "delivery", "admin", "topics")

# Kafka's wire codes (org.apache.kafka.common.resource / acl), for CreateAcls.
RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional-id": 5}
PATTERN_TYPES = {"literal": 3, "prefixed": 4}
OPERATIONS = {
    "Read": 3,
    "Write": 4,
    "Create": 5,
    "Delete": 6,
    "Alter": 7,
    "Describe": 8,
    "DescribeConfigs": 10,
    "IdempotentWrite": 12,
}
ALLOW = 3


@dataclass(frozen=True, slots=True)
class Grant:
    """Allow ``operations`` on the resources ``pattern`` ``name`` selects."""

    resource: str  # topic | group | transactional-id | cluster
    pattern: str  # literal | prefixed
    name: str
    operations: tuple[str, ...]


def grants(service: str, prefix: str) -> list[Grant]:
    """What ``service`` may do on a cluster whose hookline names start with ``prefix``."""
    if service not in SERVICES:
        raise KeyError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")

    def topic(logical: str, *ops: str, pattern: str = "literal") -> Grant:
        return Grant("topic", pattern, prefix + logical, ops)

    def group(name: str, pattern: str = "literal") -> Grant:
        return Grant("group", pattern, prefix + name, ("Read",))

    def transactions(name: str) -> Grant:
        return Grant("transactional-id", "prefixed", prefix + name, ("Write",))

    table: dict[str, list[Grant]] = {
        "ingress": [topic("inbound", "Write"), topic("config", "Read")],
        "dispatcher": [
            topic("inbound", "Read"),
            topic("config", "Read"),
            topic("dispatcher-runs", "Read", "Write"),
            topic("workflow-commands", "Read", "Write"),
            topic("workflow-events", "Write"),
            topic("dlq", "Write"),
            group("dispatcher"),
            group("engine"),
            transactions("dispatcher-"),
            transactions("engine-"),
        ],
        "delivery": [
            topic("workflow-events", "Read", "Write"),
            topic("delivery-holds", "Read", "Write"),
            topic("delivery-retry.", "Read", "Write", pattern="prefixed"),
            topic("delivery-attempts", "Write"),
            topic("dlq", "Write"),
            topic("config", "Read", "Write"),
            group("delivery", pattern="prefixed"),
        ],
        "admin": [
            topic("config", "Read", "Write"),
            topic("delivery-attempts", "Read"),
            topic("inbound", "Read", "Write"),
            topic("workflow-events", "Read", "Write"),
            topic("workflow-commands", "Write"),
            topic("delivery-retry.", "Write", pattern="prefixed"),
            topic("dlq", "Read"),
            topic("operations", "Read", "Write"),
            topic("audit", "Read", "Write"),
        ],
        "topics": [topic("", "Create", "Describe", "DescribeConfigs", pattern="prefixed")],
    }
    return table[service]


def default_principal(service: str) -> str:
    return f"User:{service}"


def kafka_acls_commands(
    prefix: str,
    *,
    bootstrap: str = "$BOOTSTRAP",
    command_config: str | None = "admin.properties",
    principal: Callable[[str], str] = default_principal,
    services: tuple[str, ...] = SERVICES,
) -> list[str]:
    """``kafka-acls.sh --add`` lines that grant every service its table, one per grant."""
    lines: list[str] = []
    flag = {"topic": "--topic", "group": "--group", "transactional-id": "--transactional-id"}
    for service in services:
        lines.append(f"# {service}")
        for g in grants(service, prefix):
            words = ["kafka-acls.sh", "--bootstrap-server", bootstrap]
            if command_config:
                words += ["--command-config", command_config]
            words += ["--add", "--allow-principal", principal(service)]
            for op in g.operations:
                words += ["--operation", op]
            if g.resource == "cluster":
                words.append("--cluster")
            else:
                words += [flag[g.resource], g.name]
            if g.pattern == "prefixed":
                words += ["--resource-pattern-type", "prefixed"]
            # The bootstrap is left unquoted so "$BOOTSTRAP" expands in a shell.
            quoted = [w if w == bootstrap else shlex.quote(w) for w in words]
            lines.append(" ".join(quoted))
    return lines


def markdown_table(prefix: str = "hookline.") -> str:
    """The table ``docs/deploy.md`` shows, for ``prefix``."""
    rows = [
        "| principal | resource | pattern | name | operations |",
        "|---|---|---|---|---|",
    ]
    for service in SERVICES:
        for g in grants(service, prefix):
            name = f"`{g.name}`" if g.name else "(all)"
            rows.append(
                f"| `{default_principal(service)}` | {g.resource} | {g.pattern} | {name} "
                f"| {', '.join(g.operations)} |"
            )
    return "\n".join(rows)
