"""A receiver's URL may carry a token; no log line of a delivery holds it, at DEBUG too."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from shared.crypto import generate_subscription_secret
from shared.logging import configure_logging
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, subscription
from testkit.kafka import read_topic, wait_until
from testkit.receivers import Receiver, completed, publish

THIRD_PARTY = ("httpx", "httpcore", "aiohttp", "aiokafka", "hpack", "h11")


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Logging as a service configures it, at DEBUG, into a buffer; put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in THIRD_PARTY})
    buffer = io.StringIO()
    configure_logging("delivery", "DEBUG", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


async def test_a_url_with_a_token_in_its_query_and_user_info_is_in_no_log_line_at_debug(
    settings: Settings, topics: Topics, run_service: Any, debug_log: io.StringIO
) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    async with Receiver() as receiver:
        receiver.script("/hook", [500])  # a failure and a retry log more than a success
        base = f"127.0.0.1:{receiver.port}"
        await put_entities(
            bootstrap,
            topics.config,
            # Delivered: the token in the query string travels, and is logged nowhere.
            subscription(
                "sub-query",
                secrets=[generate_subscription_secret()],
                url=f"http://{base}/hook?token=s3cr3t",
                events=["workflow.completed"],
            ),
            # Refused by the destination policy (user info), and logged so, without it.
            subscription(
                "sub-userinfo",
                secrets=[generate_subscription_secret()],
                url=f"http://user:pa55@{base}/userinfo?token=s3cr3t",
                events=["workflow.completed"],
            ),
        )
        async with run_service():
            await publish(bootstrap, topics.workflow_events, [completed("run-log")])
            await wait_until(lambda: len(receiver.on("/hook")) >= 2, timeout=20)

            async def refusal_recorded() -> bool:
                records = await read_topic(bootstrap, topics.delivery_attempts, timeout=2)
                return any(b"sub-userinfo" in (r.value or b"") for r in records)

            await wait_until(refusal_recorded, timeout=20, message="the refusal's attempt")
    assert receiver.on("/userinfo") == []
    lines = debug_log.getvalue().splitlines()
    entries = [orjson.loads(line) for line in lines]
    loggers = {e["logger"].split(".")[0] for e in entries}
    # The third-party libraries did log, at DEBUG, through the project's formatter.
    assert {"httpx", "aiokafka"} <= loggers, loggers
    assert any("127.0.0.1" in line and "/hook" in line for line in lines)
    assert any("sub-userinfo" in line for line in lines)
    for line in lines:
        assert "pa55" not in line, line
        assert "s3cr3t" not in line, line
