"""``hookline dispatcher`` as a real process: SIGKILL mid-stream, restart, exactly one run each."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.dispatcher import run_id_for
from shared.entities import Binding, Node
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook, workflow
from testkit.kafka import read_topic, wait_until
from tests.dispatcher.helpers import commands, lifecycle, push_event, queued_events, write_inbound

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HOOKLINE = Path(sys.executable).parent / "hookline"
WORKFLOWS = ("wf-a", "wf-b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DispatcherProcess:
    def __init__(self, settings: Settings, port: int, log: Path) -> None:
        self.env = {
            **os.environ,
            "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
            "HOOKLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "HOOKLINE_RETRY_SCHEDULE": ",".join(str(s) for s in settings.retry_schedule),
            "HOOKLINE_DISPATCHER_PORT": str(port),
            "HOOKLINE_HOST": "127.0.0.1",
            "HOOKLINE_ENGINE": "kafka",
        }
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(HOOKLINE), "dispatcher"], env=self.env, stdout=out, stderr=out
            )

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
            return response.status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[DispatcherProcess]]:
    started: list[DispatcherProcess] = []
    yield started
    for p in started:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


async def test_sigkill_mid_stream_and_restart_yield_exactly_one_run_per_event_and_workflow(
    bootstrap: str,
    settings: Settings,
    topics: Topics,
    fixtures_dir: Path,
    tmp_path: Path,
    processes: list[DispatcherProcess],
) -> None:
    await put_entities(
        bootstrap,
        topics.config,
        *(
            webhook(
                f"gh-{i}",
                provider="github",
                bindings=[Binding(workflow_id=w, events=["push"]) for w in WORKFLOWS],
            )
            for i in range(4)
        ),
    )
    # A backlog (every event twice: provider redeliveries) keeps the first process busy, so
    # the kill lands inside a transaction; more events, and redeliveries of events it already
    # dispatched, arrive after the restart.
    events = [
        push_event(fixtures_dir, webhook_id=f"gh-{i % 4}", delivery_id=f"d-{i}") for i in range(600)
    ]
    await write_inbound(bootstrap, topics, *events[:500], *events[:500])
    port = free_port()
    first = DispatcherProcess(settings, port, tmp_path / "dispatcher.log")
    processes.append(first)
    first.start()

    async def some_committed() -> bool:
        return len(await read_topic(bootstrap, topics.workflow_commands, timeout=2)) >= 100

    await wait_until(some_committed, timeout=30, interval=0.1, message="commands before the kill")
    first.kill()
    assert first.proc is not None and first.proc.returncode == -signal.SIGKILL
    second = DispatcherProcess(settings, port, tmp_path / "dispatcher.log")
    processes.append(second)
    second.start()
    await write_inbound(bootstrap, topics, *events[400:])
    expected = {
        (run_id_for(e.webhook_id, e.provider_event_id, w), w) for e in events for w in WORKFLOWS
    }

    async def all_there() -> bool:
        got = await read_topic(bootstrap, topics.workflow_commands, timeout=5)
        return len({c.run_id for c in commands(got)}) >= len(expected)

    await wait_until(all_there, timeout=60, interval=0.5, message="every run requested")
    await wait_until(second.ready, timeout=10, interval=0.2, message="restarted dispatcher ready")
    # Committed records only: exactly one command and one queued event per (event, workflow).
    cmds = commands(await read_topic(bootstrap, topics.workflow_commands, timeout=10))
    queued = queued_events(await read_topic(bootstrap, topics.workflow_events, timeout=10))
    cmd_counts = Counter((c.run_id, c.workflow_id) for c in cmds)
    queued_counts = Counter((q.run_id, q.workflow_id) for q in queued)
    assert set(cmd_counts) == expected and max(cmd_counts.values()) == 1
    assert set(queued_counts) == expected and max(queued_counts.values()) == 1

    # SIGTERM: the restarted process finishes its transaction and exits 0.
    assert second.proc is not None
    second.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(second.proc.wait, 20) == 0


async def test_local_engine_process_runs_a_workflow_and_sigterm_exits_zero(
    bootstrap: str,
    settings: Settings,
    topics: Topics,
    fixtures_dir: Path,
    tmp_path: Path,
    processes: list[DispatcherProcess],
) -> None:
    await put_entities(
        bootstrap,
        topics.config,
        workflow("wf-ci", nodes=[Node(id="note", kind="log", config={"message": "hi"})]),
        webhook(
            "gh-main", provider="github", bindings=[Binding(workflow_id="wf-ci", events=["*"])]
        ),
    )
    proc = DispatcherProcess(settings, free_port(), tmp_path / "dispatcher.log")
    proc.env["HOOKLINE_ENGINE"] = "local"
    processes.append(proc)
    proc.start()
    await wait_until(proc.ready, timeout=30, interval=0.2, message="dispatcher ready")
    async with httpx.AsyncClient() as client:
        checks = (await client.get(f"http://127.0.0.1:{proc.port}/readyz")).json()["checks"]
        metrics = (await client.get(f"http://127.0.0.1:{proc.port}/metrics")).text
    assert checks == {"kafka": True, "config": True, "dispatcher": True, "engine": True}
    assert "hookline_dispatcher_runs_total" in metrics
    await write_inbound(bootstrap, topics, push_event(fixtures_dir, delivery_id="p-local"))
    run_id = run_id_for("gh-main", "p-local", "wf-ci")

    async def succeeded() -> bool:
        records = await read_topic(bootstrap, topics.workflow_events, timeout=2)
        return any(
            getattr(e, "to", None) == "succeeded" and e.run_id == run_id for e in lifecycle(records)
        )

    await wait_until(succeeded, timeout=30, interval=0.3, message="the run to succeed")
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.proc.wait, 20) == 0
