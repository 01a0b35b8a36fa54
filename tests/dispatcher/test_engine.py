"""The local engine: runs workflow definitions and reports each run's lifecycle, in order."""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.dispatcher import LocalEngine, NodePolicy, run_id_for
from shared.cloudevents import encode
from shared.config_view import ConfigView
from shared.entities import Binding, Node
from shared.kafka import create_producer
from shared.messages import ErrorOccurred, RunRequested, StatusChanged, WorkflowFailed
from shared.topics import Topics
from testkit.config import put_entities, webhook, workflow
from testkit.kafka import read_topic, wait_until
from tests.dispatcher.helpers import (
    lifecycle,
    push_event,
    running_dispatcher,
    write_inbound,
    write_raw,
)

pytestmark = pytest.mark.kafka


@contextlib.contextmanager
def http_receiver(status: int = 200) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on loopback that records requests."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            seen.append(
                {"method": self.command, "path": self.path, "body": self.rfile.read(length)}
            )
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_POST = do_GET = _answer

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def running_engine(bootstrap: str, topics: Topics) -> AsyncIterator[LocalEngine]:
    async with ConfigView(bootstrap, topics.config) as view:
        await view.wait_ready()
        engine = LocalEngine(
            bootstrap,
            topics,
            view,
            transactional_id=f"{topics.prefix}engine-test",
            policy=NodePolicy(
                allow_insecure_urls=True, allow_private_destinations=True, http_timeout=3
            ),
            retry_backoff=0.2,
        )
        async with engine:
            yield engine


async def send_commands(bootstrap: str, topics: Topics, *commands: RunRequested) -> None:
    async with create_producer(bootstrap) as producer:
        for command in commands:
            rec = encode(command, key=command.run_id, source="/tests")
            await producer.send_and_wait(
                topics.workflow_commands, rec.value, key=rec.key, headers=rec.headers
            )


def command(fixtures_dir: Path, workflow_id: str, delivery_id: str) -> RunRequested:
    event = push_event(fixtures_dir, delivery_id=delivery_id)
    return RunRequested(
        run_id=run_id_for(event.webhook_id, delivery_id, workflow_id),
        workflow_id=workflow_id,
        webhook_id=event.webhook_id,
        provider_event_id=delivery_id,
        event_type=event.event_type,
        requested_at=datetime.now(UTC),
        input=event,
    )


def by_run(records: list[Any]) -> dict[str, list[Any]]:
    runs: dict[str, list[Any]] = defaultdict(list)
    for event in lifecycle(records):
        runs[event.run_id].append(event)
    return runs


def shape(events: list[Any]) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, StatusChanged):
            out.append(f"status.changed:{e.from_}->{e.to}")
        elif e.ce_type == "node.completed":
            out.append(f"node.completed:{e.node_id}")
        else:
            out.append(e.ce_type)
    return out


THREE_NODES = [
    Node(id="note", kind="log", config={"message": "building"}),
    Node(id="call", kind="http", config={"method": "POST"}),
    Node(id="pause", kind="sleep", config={"seconds": 0.05}),
]


async def test_three_node_workflow_emits_the_exact_sequence_per_run(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    with http_receiver() as (url, seen):
        nodes = [
            THREE_NODES[0],
            Node(id="call", kind="http", config={"url": url, "method": "POST"}),
            THREE_NODES[2],
        ]
        await put_entities(bootstrap, topics.config, workflow("wf-build", nodes=nodes))
        commands = [command(fixtures_dir, "wf-build", f"d-{i}") for i in range(3)]
        await send_commands(bootstrap, topics, *commands)
        async with running_engine(bootstrap, topics) as engine:
            await wait_until(
                lambda: engine.committed_batches >= 1 and len(seen) >= 3,
                timeout=20,
                message="three runs",
            )
        runs = by_run(await read_topic(bootstrap, topics.workflow_events, min_count=21))
    assert set(runs) == {c.run_id for c in commands}
    for events in runs.values():
        assert shape(events) == [
            "status.changed:queued->running",
            "workflow.started",
            "node.completed:note",
            "node.completed:call",
            "node.completed:pause",
            "workflow.completed",
            "status.changed:running->succeeded",
        ]
        assert events[3].output["status_code"] == 200
    assert len(seen) == 3 and all(r["method"] == "POST" for r in seen)
    assert b'"payload"' in seen[0]["body"]


@pytest.mark.parametrize(
    ("nodes", "code", "node_id", "completed"),
    [
        (
            [
                THREE_NODES[0],
                Node(id="boom", kind="fail", config={"message": "no"}),
                THREE_NODES[2],
            ],
            "node_failed",
            "boom",
            ["note"],
        ),
        (
            [Node(id="bad-sleep", kind="sleep", config={"seconds": "x"})],
            "invalid_node_config",
            "bad-sleep",
            [],
        ),
        ([Node(id="no-url", kind="http")], "invalid_node_config", "no-url", []),
    ],
)
async def test_failing_node_yields_error_occurred_and_workflow_failed(
    bootstrap: str,
    topics: Topics,
    fixtures_dir: Path,
    nodes: list[Node],
    code: str,
    node_id: str,
    completed: list[str],
) -> None:
    await put_entities(bootstrap, topics.config, workflow("wf-fails", nodes=nodes))
    cmd = command(fixtures_dir, "wf-fails", "d-fail")
    await send_commands(bootstrap, topics, cmd)
    async with running_engine(bootstrap, topics) as engine:
        await wait_until(lambda: engine.committed_batches >= 1, timeout=20, message="the run")
    events = by_run(await read_topic(bootstrap, topics.workflow_events, min_count=5))[cmd.run_id]
    assert shape(events) == [
        "status.changed:queued->running",
        "workflow.started",
        *(f"node.completed:{n}" for n in completed),
        "error.occurred",
        "workflow.failed",
        "status.changed:running->failed",
    ]
    error, failed = events[-3], events[-2]
    assert (
        isinstance(error, ErrorOccurred) and error.error.code == code and error.node_id == node_id
    )
    assert isinstance(failed, WorkflowFailed) and failed.error.code == code


async def test_http_node_answered_with_an_error_fails_the_run(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    with http_receiver(status=500) as (url, _):
        await put_entities(
            bootstrap,
            topics.config,
            workflow(
                "wf-500", nodes=[Node(id="call", kind="http", config={"url": url, "method": "GET"})]
            ),
        )
        cmd = command(fixtures_dir, "wf-500", "d-500")
        await send_commands(bootstrap, topics, cmd)
        async with running_engine(bootstrap, topics) as engine:
            await wait_until(lambda: engine.committed_batches >= 1, timeout=20, message="the run")
    events = by_run(await read_topic(bootstrap, topics.workflow_events, min_count=5))[cmd.run_id]
    assert events[-2].ce_type == "workflow.failed" and events[-2].error.code == "http_status"


async def test_unknown_workflow_yields_error_and_failure_and_poison_goes_to_dlq(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    cmd = command(fixtures_dir, "wf-missing", "d-missing")
    await write_raw(
        bootstrap,
        topics.workflow_commands,
        b"r",
        b"[]",
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"x"),
            ("ce_source", b"/t"),
            ("ce_type", RunRequested.ce_type.encode()),
        ],
    )
    await send_commands(bootstrap, topics, cmd)
    async with running_engine(bootstrap, topics) as engine:
        await wait_until(lambda: engine.committed_batches >= 1, timeout=20, message="the run")
    events = by_run(await read_topic(bootstrap, topics.workflow_events, min_count=3))[cmd.run_id]
    assert shape(events) == ["error.occurred", "workflow.failed", "status.changed:queued->failed"]
    assert events[0].error.code == "unknown_workflow"
    dlq = await read_topic(bootstrap, topics.dlq, min_count=1)
    assert [r.value for r in dlq] == [b"[]"] and dlq[0].headers["hookline_service"] == b"engine"


async def test_dispatcher_and_local_engine_run_a_bound_workflow_end_to_end(
    bootstrap: str, topics: Topics, fixtures_dir: Path
) -> None:
    await put_entities(
        bootstrap,
        topics.config,
        workflow("wf-ci", nodes=[THREE_NODES[0]]),
        webhook(
            "gh-main", provider="github", bindings=[Binding(workflow_id="wf-ci", events=["push"])]
        ),
    )
    await write_inbound(bootstrap, topics, push_event(fixtures_dir, delivery_id="e2e"))
    async with running_dispatcher(bootstrap, topics), running_engine(bootstrap, topics) as engine:
        await wait_until(lambda: engine.committed_batches >= 1, timeout=20, message="the run")
    run_id = run_id_for("gh-main", "e2e", "wf-ci")
    events = by_run(await read_topic(bootstrap, topics.workflow_events, min_count=6))[run_id]
    assert shape(events) == [
        "status.changed:None->queued",
        "status.changed:queued->running",
        "workflow.started",
        "node.completed:note",
        "workflow.completed",
        "status.changed:running->succeeded",
    ]
    # Every event of the run names what started it, as the queued one does.
    triggers = {e.trigger for e in events}
    assert len(triggers) == 1
    (trigger,) = triggers
    assert trigger is not None and trigger.provider_event_id == "e2e"
    assert trigger.webhook_id == "gh-main" and trigger.inbound_event_id.startswith("in_")
