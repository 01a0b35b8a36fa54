"""``hookline deliveries|events|recover|replay|dead-letters`` against a live admin process."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cli.main import main
from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_ADMIN_TOKEN
from testkit.config import put_entities, subscription, webhook
from testkit.opsdata import attempt, inbound, write

from .conftest import AUTH, AdminProcess, spawn

pytestmark = pytest.mark.kafka

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def fill(settings: Settings, topics: Topics) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    await put_entities(
        bootstrap,
        topics.config,
        subscription("sub-a", secrets=[SECRET], url="https://r.example/"),
        webhook("gh-main", provider="github"),
    )
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    await write(
        bootstrap,
        topics.delivery_attempts,
        [attempt("d1", 1, "failed", t0), attempt("d2", 1, "succeeded", t0)],
    )
    await write(bootstrap, topics.inbound, [inbound("e-1")])


def test_the_commands_print_tables_and_json(
    settings: Settings,
    topics: Topics,
    admin_processes: list[AdminProcess],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    asyncio.run(fill(settings, topics))
    server = spawn(admin_processes, settings, tmp_path / "admin.log").wait_ready()
    monkeypatch.setenv("HOOKLINE_ADMIN_URL", server.url)
    monkeypatch.setenv("HOOKLINE_ADMIN_TOKEN", TEST_ADMIN_TOKEN)
    # Ready means caught up with what was on the topics when it started.
    listed = httpx.get(f"{server.url}/v1/deliveries", headers=AUTH).json()
    assert {d["id"] for d in listed["items"]} == {"d1", "d2"}

    def run(*argv: str) -> str:
        code = main(list(argv))
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.out

    table = run("deliveries", "list", "--outcome", "failed")
    assert table.splitlines()[0].split()[:2] == ["ID", "SUBSCRIPTION_ID"]
    assert "d1" in table and "d2" not in table
    shown = json.loads(run("deliveries", "show", "d1", "--json"))
    assert shown["attempts"][0]["webhook_id"] == "msg_d1"
    assert "ATTEMPT" in run("deliveries", "show", "d1")
    events = json.loads(run("events", "list", "--webhook-id", "gh-main", "--json"))
    (event,) = events["items"]
    assert event["provider_event_id"] == "e-1" and event["verification"] == "github-sha256"
    assert "x-github-delivery: e-1" in run("events", "show", event["id"])
    assert run("dead-letters", "list").splitlines() == [
        "ID  SOURCE_TOPIC  REASON  SIZE  DEAD_LETTERED_AT  RETRIED_AT"
    ]
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    recovered = json.loads(run("recover", "sub-a", "--since", since, "--id", "r-1", "--json"))
    assert recovered["kind"] == "recovery" and recovered["id"] == "r-1"
    replay = run("replay", "gh-main", "--since", since, "--id", "p-1")
    assert "kind: replay" in replay and "id: p-1" in replay

    assert main(["deliveries", "show", "nope"]) == 1
    assert "404" in capsys.readouterr().err
    monkeypatch.setenv("HOOKLINE_ADMIN_URL", "http://127.0.0.1:9")
    assert main(["deliveries", "list"]) == 2
