"""``hookline ingress`` as a process: serves webhooks on its public port and health and
metrics on its internal one only, without an admin token or the admin API, logs JSON,
exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from services.ingress import create_ingress_app
from services.ingress.main import frozen_startup_heap
from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_ADMIN_TOKEN, TEST_SECRET_KEY
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic, wait_until
from tests.ingress.helpers import github_headers

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_ingress_process_serves_and_stops_cleanly_on_sigterm(
    settings: Settings, topics: Topics, tmp_path: Path
):
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh", provider="github", secrets=["proc-secret"]),
    )
    port, internal_port, admin_port = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "HOOKLINE_ADMIN_TOKEN"},
        "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "HOOKLINE_SECRET_KEY": TEST_SECRET_KEY,
        "HOOKLINE_HOST": "127.0.0.1",
        "HOOKLINE_INGRESS_PORT": str(port),
        "HOOKLINE_INGRESS_INTERNAL_PORT": str(internal_port),
        "HOOKLINE_ADMIN_PORT": str(admin_port),
    }
    log_path = tmp_path / "ingress.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "ingress",
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            internal = f"http://127.0.0.1:{internal_port}"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

                async def ready() -> bool:
                    assert process.returncode is None, log_path.read_text()
                    try:
                        return (await http.get(f"{internal}/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_until(ready, timeout=30, interval=0.2, message="ingress ready")
                # Health and metrics are on the internal port alone; the public one
                # serves /webhooks/... and answers 404 elsewhere.
                for path in ("/metrics", "/readyz", "/healthz"):
                    public = await http.get(path)
                    assert public.status_code == 404, path
                    assert public.headers["content-type"] == "application/problem+json"
                assert (await http.get(f"{internal}/healthz")).status_code == 200
                delivery = str(uuid.uuid4())
                body = b'{"ref": "refs/heads/main"}'
                headers = {
                    **github_headers("proc-secret", body, "push", delivery),
                    "Content-Type": "application/json",
                    "X-Forwarded-For": "203.0.113.50",
                }
                response = await http.post("/webhooks/gh/github", content=body, headers=headers)
                assert response.status_code == 202, response.text
                metrics = (await http.get(f"{internal}/metrics")).text
                assert 'hookline_ingress_requests_total{outcome="accepted"' in metrics
                assert "hookline_ingress_open_connections" in metrics
                # The admin API is another service: not here, on either port.
                auth = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
                assert (await http.get("/v1/webhooks", headers=auth)).status_code == 404
                with pytest.raises(httpx.TransportError):
                    await http.get(f"http://127.0.0.1:{admin_port}/v1/webhooks", headers=auth)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0, log_path.read_text()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    request_lines = [line for line in lines if line.get("msg") == "webhook request"]
    assert len(request_lines) == 1
    line = request_lines[0]
    assert line["status"] == 202 and line["event_id"] == delivery and line["event_type"] == "push"
    assert line["source_ip"] == "127.0.0.1", "X-Forwarded-For is ignored without trusted proxies"
    assert "proc-secret" not in log_path.read_text()
    records = await read_topic(settings.kafka_bootstrap_servers, topics.inbound, min_count=1)
    assert len(records) == 1


async def test_the_process_tuning_is_the_entry_points_and_undone_at_stop(
    settings: Settings, topics: Topics
):
    # An app built in a test leaves the interpreter's collector as it was; the one
    # ``hookline ingress`` serves moves what start-up built out of its way while serving.
    before = gc.get_freeze_count()
    plain = create_ingress_app(settings)
    async with plain.router.lifespan_context(plain):
        assert gc.get_freeze_count() == before
    served = create_ingress_app(settings, while_serving=frozen_startup_heap)
    async with served.router.lifespan_context(served):
        assert gc.get_freeze_count() > before
    assert gc.get_freeze_count() == before


async def test_an_internal_port_that_cannot_be_served_stops_the_ingress_with_1(
    settings: Settings, topics: Topics, tmp_path: Path
):
    # Nothing could probe or scrape it: the process goes, and Kubernetes restarts it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **{k: v for k, v in os.environ.items() if k != "HOOKLINE_ADMIN_TOKEN"},
            "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
            "HOOKLINE_SECRET_KEY": TEST_SECRET_KEY,
            "HOOKLINE_HOST": "127.0.0.1",
            "HOOKLINE_INGRESS_PORT": str(free_port()),
            "HOOKLINE_INGRESS_INTERNAL_PORT": str(taken.getsockname()[1]),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "ingress",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1, output.decode()
    assert b'"msg":"the internal port stopped"' in output
    assert b"Traceback" not in output
