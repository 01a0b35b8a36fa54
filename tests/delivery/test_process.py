"""``hookline delivery`` as a real process: SIGKILL mid-stream loses nothing; SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_SECRET_KEY
from testkit.config import put_entities, subscription
from testkit.kafka import wait_until
from testkit.receivers import Receiver, completed, publish

HOOKLINE = Path(sys.executable).with_name("hookline")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        HOOKLINE_TOPIC_PREFIX=settings.topic_prefix,
        HOOKLINE_TOPIC_PARTITIONS=str(settings.topic_partitions),
        HOOKLINE_SECRET_KEY=TEST_SECRET_KEY,
        HOOKLINE_ALLOW_PRIVATE_DESTINATIONS="1",
        HOOKLINE_ALLOW_INSECURE_URLS="1",
        HOOKLINE_RETRY_SCHEDULE=",".join(str(g) for g in settings.retry_schedule),
        HOOKLINE_RETRY_JITTER="0",
        HOOKLINE_HOST="127.0.0.1",
        HOOKLINE_DELIVERY_PORT=str(port),
        HOOKLINE_SHUTDOWN_GRACE="5",
        HOOKLINE_LOG_LEVEL="WARNING",
    )
    return env


async def _start(settings: Settings, port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(HOOKLINE),
        "delivery",
        env=_env(settings, port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _healthy(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
async def test_sigkill_mid_stream_then_restart_delivers_every_event_with_stable_webhook_ids(
    settings: Settings, topics: Topics
) -> None:
    events = 400
    async with Receiver() as receiver:
        receiver.slow("/hook", 0.02)
        await put_entities(
            settings.kafka_bootstrap_servers, topics.config, subscription("s", url=receiver.url())
        )
        await publish(
            settings.kafka_bootstrap_servers,
            topics.workflow_events,
            [completed(f"run-{i:04d}") for i in range(events)],
        )
        port = _free_port()
        first = await _start(settings, port)
        try:
            await wait_until(lambda: len(receiver.requests) >= 80, timeout=30)
        finally:
            first.kill()  # SIGKILL: no drain, no commit
            await first.wait()
        at_kill = len(receiver.requests)
        assert at_kill < events, "the stream ended before the kill"

        second = await _start(settings, port)
        try:
            await wait_until(
                lambda: (
                    len({json.loads(r.body)["data"]["run_id"] for r in receiver.requests}) == events
                ),
                timeout=60,
                message="every event delivered after the restart",
            )
            assert await _healthy(port)
            second.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(second.wait(), timeout=15)
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
    assert code == 0
    ids_per_run: dict[str, set[str]] = defaultdict(set)
    for request in receiver.requests:
        ids_per_run[json.loads(request.body)["data"]["run_id"]].add(request.headers["webhook-id"])
    assert len(ids_per_run) == events  # every event at least once
    assert all(len(ids) == 1 for ids in ids_per_run.values())  # a duplicate keeps its id
    duplicates = len(receiver.requests) - events
    print(f"delivered {len(receiver.requests)} for {events} events; {duplicates} duplicates")
    # Only deliveries in flight or uncommitted at the kill may repeat.
    assert duplicates <= at_kill
