"""The ACL table is one piece of data: the docs show it, ``hookline acls`` prints it."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cli.main import main
from shared.acls import SERVICES, grants, kafka_acls_commands, markdown_table

DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def test_the_docs_table_is_the_data() -> None:
    text = DEPLOY_DOC.read_text()
    start, end = "<!-- acl-table:start -->\n", "\n<!-- acl-table:end -->"
    assert start in text and end in text, "docs/deploy.md lost its ACL table markers"
    shown = text.split(start, 1)[1].split(end, 1)[0]
    assert shown == markdown_table("hookline."), (
        "docs/deploy.md's ACL table differs from shared/acls.py: paste markdown_table() there"
    )


def test_least_privilege_in_brief() -> None:
    def ops(service: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for g in grants(service, "P."):
            out.setdefault(g.name, set()).update(g.operations)
        return out

    ingress = ops("ingress")
    assert ingress == {"P.inbound": {"Write"}, "P.config": {"Read"}}
    assert "Write" in ops("delivery")["P.config"], "the disable event goes to config"
    assert not any("Create" in o for s in SERVICES[:-1] for o in ops(s).values())
    assert not any(g.resource == "cluster" for s in SERVICES for g in grants(s, "P."))


def test_hookline_acls_prints_one_kafka_acls_command_per_grant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["acls", "--prefix", "acme.", "--bootstrap-server", "k:9093"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("kafka")]
    assert len(lines) == sum(len(grants(s, "acme.")) for s in SERVICES)
    words = shlex.split(
        next(line for line in lines if "--transactional-id" in line and "dispatcher" in line)
    )
    assert words[words.index("--bootstrap-server") + 1] == "k:9093"
    assert words[words.index("--allow-principal") + 1] == "User:dispatcher"
    assert words[words.index("--transactional-id") + 1] == "acme.dispatcher-"
    assert words[words.index("--resource-pattern-type") + 1] == "prefixed"
    expected = kafka_acls_commands("acme.", bootstrap="k:9093")
    assert lines == [line for line in expected if not line.startswith("#")]
