"""While Kafka is away a service retries quietly: the client's metadata retries are
throttled, and its repeated log lines are let through once per interval with a count."""

from __future__ import annotations

import logging
import socket
import time

from aiokafka import AIOKafkaClient

from shared._aiokafka_internals import throttle_failed_metadata_updates
from shared.logging import RepeatLimiter


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_failed_metadata_update_waits_the_client_backoff_before_the_next() -> None:
    throttle_failed_metadata_updates()
    throttle_failed_metadata_updates()  # idempotent: one wait, not two
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{_closed_port()}", retry_backoff_ms=100)
    updates = 0
    began = time.monotonic()
    while time.monotonic() - began < 1.0:
        assert not await client._metadata_update(client.cluster, set())
        updates += 1
    await client.close()
    assert 5 <= updates <= 11, f"{updates} failed updates in a second at a 100 ms backoff"


def _record(msg: str, *args: object, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeated_lines_pass_once_per_interval_with_the_count_left_out() -> None:
    now = [0.0]
    limiter = RepeatLimiter(("aiokafka",), 30.0, clock=lambda: now[0])
    passed = []
    for i in range(1000):
        now[0] = i * 0.1  # 100 s of a line every 100 ms, its node id changing
        record = _record("Unable connect to node with id %s: refused", i % 3)
        if limiter.filter(record):
            passed.append(record)
    assert len(passed) == 4  # at 0, 30, 60 and 90 s
    assert [getattr(r, "repeated", 0) for r in passed] == [0, 299, 299, 299]
    assert limiter.filter(_record("another template"))  # each template on its own
    assert limiter.filter(_record("same text", name="hookline.delivery"))
    assert limiter.filter(_record("same text", name="hookline.delivery")), "ours pass"
