"""``HOOKLINE_INGRESS_WORKERS=2``: two ingress processes serve one port, and SIGTERM stops both."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_SECRET_KEY
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic, wait_until
from tests.ingress.helpers import github_headers
from tests.ingress.test_main import ROOT, free_port

pytestmark = pytest.mark.kafka


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _established_on(port: int) -> set[int]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


async def test_two_workers_share_the_port_and_stop_together_on_sigterm(
    settings: Settings, topics: Topics, tmp_path: Path
):
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh", provider="github", secrets=["workers-secret"]),
    )
    port, internal = free_port(), free_port()
    env = {
        **os.environ,
        "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "HOOKLINE_SECRET_KEY": TEST_SECRET_KEY,
        "HOOKLINE_HOST": "127.0.0.1",
        "HOOKLINE_INGRESS_PORT": str(port),
        "HOOKLINE_INGRESS_INTERNAL_PORT": str(internal),
        "HOOKLINE_INGRESS_WORKERS": "2",
    }
    log_path = tmp_path / "ingress.log"
    clients: list[httpx.AsyncClient] = []
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
            # Both workers listen only once ready: wait until each holds a listening
            # socket on the port, i.e. until both answer.
            async def both_ready() -> bool:
                assert process.returncode is None, log_path.read_text()
                workers = _children(process.pid)
                return len(workers) == 2 and all(_listens(pid, port) for pid in workers)

            await wait_until(both_ready, timeout=60, interval=0.2, message="two workers ready")
            workers = _children(process.pid)
            # The internal port is shared too: each worker holds it, and it answers.
            assert all(_listens(pid, internal) for pid in workers)
            async with httpx.AsyncClient(timeout=5) as probe:
                ready = await probe.get(f"http://127.0.0.1:{internal}/readyz")
                assert ready.status_code == 200, ready.text
            # Each connection is a new source port, which the kernel hashes to a worker;
            # with 24 of them both workers get some (all on one: 2 in 8 million).
            body = b'{"ref": "refs/heads/main"}'
            for _ in range(24):
                client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
                clients.append(client)
                headers = {
                    **github_headers("workers-secret", body, "push", str(uuid.uuid4())),
                    "Content-Type": "application/json",
                }
                response = await client.post("/webhooks/gh/github", content=body, headers=headers)
                assert response.status_code == 202, response.text
            established = _established_on(port)
            served = {pid: len(_socket_inodes(pid) & established) for pid in workers}
            # (Connections idle past the keep-alive timeout may be gone already.)
            assert all(count > 0 for count in served.values()), served

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0, log_path.read_text()
            alive = [pid for pid in workers if _alive(pid)]
            assert not alive, "a worker outlived the supervisor"
        finally:
            for client in clients:
                await client.aclose()
            if process.returncode is None:
                process.kill()
                await process.wait()
    records = await read_topic(settings.kafka_bootstrap_servers, topics.inbound, min_count=24)
    assert len(records) == 24


def _listens(pid: int, port: int) -> bool:
    listening: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                listening.add(int(fields[9]))
    try:
        return bool(_socket_inodes(pid) & listening)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()
