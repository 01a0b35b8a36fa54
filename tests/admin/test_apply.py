"""``hookline apply``: the example file twice (the second run changes nothing), dry runs,
pruning, environment variables, and clear failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.stack import DEMO_FILE
from shared.settings import Settings
from shared.topics import Topics
from testkit.kafka import read_topic

from .conftest import AdminProcess, running_admin, settings_env, spawn

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "hookline.yaml"
DEV_EXAMPLE = DEMO_FILE
GITHUB_SECRET = "example-github-secret-5e6f7a8b"


def apply(
    server: AdminProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        **settings_env(server.settings),
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", "apply", "--url", server.url, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def config_records(settings: Settings, topics: Topics) -> int:
    return len(await read_topic(settings.kafka_bootstrap_servers, topics.config))


async def test_applying_the_example_twice_changes_nothing_the_second_time(
    settings: Settings, topics: Topics, admin_processes: list[AdminProcess], tmp_path: Path
):
    server = spawn(admin_processes, settings, tmp_path / "admin.log").wait_ready()

    first = apply(server, "-f", str(EXAMPLE))
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert lines[:3] == [
        "created    workflow/wf-ci",
        "created    webhook/gh-main",
        "created    subscription/ci-results",
    ]
    assert any(line.strip().startswith("secret: whsec_") for line in lines), (
        "the generated secret, once"
    )
    assert lines[-1] == "3 created, 0 unchanged"
    written = await config_records(settings, topics)
    assert written == 3

    second = apply(server, "-f", str(EXAMPLE))
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.splitlines() == [
        "unchanged  workflow/wf-ci",
        "unchanged  webhook/gh-main",
        "unchanged  subscription/ci-results",
        "3 unchanged",
    ]
    assert await config_records(settings, topics) == written, "nothing was written"

    # The state is what the file says, and the webhook's secret is the one from the environment.
    async with running_admin(settings, topics) as admin:
        view = admin.ctx.view
        webhook = view.webhook("gh-main")
        assert webhook is not None and view.secrets(webhook) == [GITHUB_SECRET]
        assert webhook.bindings[0].events == ["push", "pull_request.*"]
        sub = view.subscription("ci-results")
        assert sub is not None and sub.events == ["workflow.completed", "workflow.failed"]
        workflow = view.workflow("wf-ci")
        assert workflow is not None and [n.id for n in workflow.nodes] == [
            "announce",
            "build",
            "report",
        ]

    # A new secret in the environment is a change (a rotation); the old one stays valid.
    rotated = apply(
        server, "-f", str(EXAMPLE), env={"GITHUB_WEBHOOK_SECRET": "next-github-secret-1234"}
    )
    assert "updated    webhook/gh-main  (secret)" in rotated.stdout
    assert rotated.stdout.splitlines()[-1] == "1 updated, 2 unchanged"


async def test_dry_run_and_prune(
    settings: Settings, topics: Topics, admin_processes: list[AdminProcess], tmp_path: Path
):
    server = spawn(admin_processes, settings, tmp_path / "admin.log").wait_ready()
    assert apply(server, "-f", str(EXAMPLE)).returncode == 0
    written = await config_records(settings, topics)

    changed = tmp_path / "changed.yaml"
    changed.write_text(
        EXAMPLE.read_text().replace(
            "https://ci-dashboard.example.com/hooks/hookline", "https://new.example.com/h"
        )
    )
    dry = apply(server, "-f", str(changed), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "updated?   subscription/ci-results  (url)" in dry.stdout
    assert dry.stdout.splitlines()[-1] == "1 updated, 2 unchanged (dry run: nothing written)"
    assert await config_records(settings, topics) == written

    only_workflows = tmp_path / "workflows.yaml"
    only_workflows.write_text("workflows:\n  - id: wf-ci\n    name: CI\n")
    dry_prune = apply(server, "-f", str(only_workflows), "--prune", "--dry-run")
    assert "deleted?   subscription/ci-results" in dry_prune.stdout
    assert "deleted?   webhook/gh-main" in dry_prune.stdout
    assert await config_records(settings, topics) == written

    pruned = apply(server, "-f", str(only_workflows), "--prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert pruned.stdout.splitlines() == [
        "updated    workflow/wf-ci  (description, nodes)",
        "deleted    subscription/ci-results",
        "deleted    webhook/gh-main",
        "1 updated, 0 unchanged, 2 deleted",
    ]
    again = apply(server, "-f", str(only_workflows), "--prune")
    assert again.stdout.splitlines()[-1] == "1 unchanged"


async def test_the_dev_example_applies_with_its_variables(
    settings: Settings, admin_processes: list[AdminProcess], tmp_path: Path, topics: Topics
):
    server = spawn(admin_processes, settings, tmp_path / "admin.log").wait_ready()
    env = {
        "HOOKLINE_DEV_GITHUB_SECRET": "dev-github-secret-abcdef",
        "HOOKLINE_DEV_RECEIVER_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    first = apply(server, "-f", str(DEV_EXAMPLE), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    second = apply(server, "-f", str(DEV_EXAMPLE), env=env)
    assert second.stdout.splitlines()[-1] == "3 unchanged"


def test_failures_are_clear(
    settings: Settings, admin_processes: list[AdminProcess], tmp_path: Path
):
    server = spawn(admin_processes, settings, tmp_path / "admin.log").wait_ready()
    missing = apply(server, "-f", str(EXAMPLE), env={"GITHUB_WEBHOOK_SECRET": ""})
    # Set but empty is a value: the server then says the secret is too short.
    assert missing.returncode == 1
    assert "failed     webhook/gh-main  HTTP 422" in missing.stdout and "secret" in missing.stdout

    env = settings_env(settings)
    result = subprocess.run(
        [sys.executable, "-m", "cli", "apply", "--url", server.url, "-f", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "GITHUB_WEBHOOK_SECRET" in result.stderr and "not set" in result.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("webhooks:\n  - provider: github\n")
    assert "needs an id" in apply(server, "-f", str(bad)).stderr
    bad.write_text("webhook:\n  - id: x\n")
    assert "unknown sections" in apply(server, "-f", str(bad)).stderr

    unreachable = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "apply",
            "--url",
            "http://127.0.0.1:1",
            "-f",
            str(EXAMPLE),
        ],
        env={**env, "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 2 and "cannot reach the admin API" in unreachable.stderr
