"""The OpenAPI document, and schemathesis run against a live admin process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import Settings

from .conftest import AUTH, Admin, AdminProcess, spawn

pytestmark = pytest.mark.kafka

# ``make test`` sends 5 examples per operation; ``make test-faults`` more
# (HOOKLINE_SCHEMATHESIS_EXAMPLES).
EXAMPLES = int(os.environ.get("HOOKLINE_SCHEMATHESIS_EXAMPLES", "5"))
SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'st'; sys.exit(schemathesis())"


async def test_the_document_describes_every_operation(admin: Admin):
    answer = await admin.client.get("/openapi.json")
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for resource in ("webhooks", "subscriptions", "workflows"):
        assert set(paths[f"/v1/{resource}"]) == {"get", "post"}
        assert set(paths[f"/v1/{resource}/{{id}}"]) == {"get", "put", "patch", "delete"}
    assert "post" in paths["/v1/webhooks/{id}/rotate-secret"]
    assert "post" in paths["/v1/subscriptions/{id}/rotate-secret"]
    assert "post" in paths["/v1/subscriptions/{id}/recover"]
    assert "post" in paths["/v1/deliveries/{id}/redeliver"]
    assert "post" in paths["/v1/events"]
    for path in ("/v1/inbound-events", "/v1/inbound-events/{id}", "/v1/dead-letters",
                 "/v1/dead-letters/{id}", "/v1/replays", "/v1/replays/{id}",
                 "/v1/subscriptions/{id}/health"):  # fmt: skip
        assert set(paths[path]) == {"get"}, path
    assert "post" in paths["/v1/webhooks/{id}/replay"]
    assert "post" in paths["/v1/dead-letters/{id}/retry"]
    assert {"since", "until", "run_id", "workflow_id"} <= {
        p["name"] for p in paths["/v1/deliveries"]["get"]["parameters"]
    }
    schemas = doc["components"]["schemas"]
    sub_in = schemas["SubscriptionIn"]
    assert {"url", "events", "workflow_ids", "enabled", "headers", "secret"} <= set(
        sub_in["properties"]
    )
    assert sub_in["properties"]["secret"]["anyOf"][0]["writeOnly"] is True
    assert "422" in paths["/v1/subscriptions"]["post"]["responses"]
    assert "412" in paths["/v1/webhooks/{id}"]["put"]["responses"]
    assert paths["/healthz"]["get"]["security"] == []


@pytest.mark.timeout(max(300, EXAMPLES * 45))
def test_schemathesis_finds_no_server_error(
    settings: Settings, admin_processes: list[AdminProcess], tmp_path: Path
):
    server = spawn(admin_processes, settings, tmp_path / "admin.log").wait_ready()
    # Every check but positive_data_acceptance: the API rightly refuses some schema-valid
    # data (a Slack webhook without its secret, a body id that differs from the path's,
    # a stale If-Match), which that check would count as failures.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCHEMATHESIS,
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization:{AUTH['Authorization']}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "20261127",
            "--no-shrink",
            "--workers",
            "2",
            "--request-timeout",
            "20",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=max(240, EXAMPLES * 40),
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert " passed" in output and "Server error" not in output
    log = (tmp_path / "admin.log").read_text(errors="replace")
    assert '"level":"error","service":"admin","logger":"hookline.admin"' not in log, log[-4000:]
