"""Delivery throughput: the service beside a bare client loop, transports, and a hung receiver.

One run measures, against one fast receiver in its own process on loopback:
- a bare loop of POSTs at the service's concurrency, for httpx's own transport and for
  ``httpx-aiohttp`` (the faster one is what the service is then run with);
- the delivery service draining pre-published events to four fast subscriptions
  (deliveries per second, from joined to the last success, attempt records included);
- the same with a fifth subscription whose receiver never answers: the rate the
  four others keep, as a fraction of the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

from prometheus_client import REGISTRY

from services.delivery import DeliveryService, DestinationGuard, Sender
from services.delivery._transport import TransportKind
from shared.cloudevents import encode
from shared.kafka import create_producer
from shared.settings import Settings
from tests.configtools import put_entities, subscription
from tests.conftest import TEST_SECRET_KEY
from tests.delivery.receivers import completed

CONCURRENCY = 64
FAST_SUBSCRIPTIONS = 4
EVENTS = 4000
BARE_REQUESTS = 10_000

# A minimal HTTP/1.1 keep-alive server: 200 "ok" to every POST, none ever to /hung.
RECEIVER = r"""
import asyncio, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0: return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length": length = int(v)
            if len(self.buf) < end + 4 + length: return
            self.buf = self.buf[end + 4 + length:]
            if " /hung" not in head.split("\r\n", 1)[0]:
                self.t.write(OK)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _succeeded() -> float:
    value = REGISTRY.get_sample_value("hookline_delivery_attempts_total", {"outcome": "succeeded"})
    return value or 0.0


async def _bare_loop(kind: TransportKind, url: str, total: int) -> float:
    """Requests per second of plain POSTs through the same guarded client, same concurrency."""
    body = encode(completed("run-bench"), key="k", source="/bench").value or b"{}"
    guard = DestinationGuard(allow_private=True, allow_insecure=True)
    left = total

    async with Sender(guard, max_connections=CONCURRENCY, transport=kind) as sender:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                outcome = await sender.send(url, {"content-type": "application/json"}, body)
                assert outcome.succeeded, outcome

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))  # warm the pool
        left = total
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return total / (time.perf_counter() - started)


async def _service_run(bootstrap: str, base_url: str, kind: TransportKind, hung: bool) -> float:
    """Deliveries per second to the fast subscriptions, from joined to the last success."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        topic_partitions=6,
        secret_key=TEST_SECRET_KEY,
        allow_private_destinations=True,
        allow_insecure_urls=True,
        max_in_flight=CONCURRENCY,
        max_in_flight_per_subscription=CONCURRENCY // FAST_SUBSCRIPTIONS,
        request_timeout=5.0,
    )
    subs = [
        subscription(f"fast-{i}", secrets=[f"whsec_{'A' * 43}="], url=f"{base_url}/fast-{i}")
        for i in range(FAST_SUBSCRIPTIONS)
    ]
    if hung:
        subs.append(subscription("hung", secrets=["s"], url=f"{base_url}/hung"))
    async with DeliveryService(settings, transport=kind) as service:
        await put_entities(bootstrap, service.topics.config, *subs)
        assert service.view is not None
        while len(service.view.all(type(subs[0]))) < len(subs):  # noqa: ASYNC110 - polls a view
            await asyncio.sleep(0.05)
        await service.wait_joined()
        before = _succeeded()
        async with create_producer(bootstrap, linger_ms=20) as producer:
            futures = []
            for i in range(EVENTS):
                rec = encode(completed(f"run-{i}"), key=f"run-{i}", source="/bench")
                futures.append(
                    await producer.send(
                        service.topics.workflow_events, rec.value, key=rec.key, headers=rec.headers
                    )
                )
            await asyncio.gather(*futures)
        wanted = EVENTS * FAST_SUBSCRIPTIONS
        # The clock starts at the first success: group joins are not delivery work.
        while _succeeded() == before:  # noqa: ASYNC110 - polls a metric
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        first = _succeeded() - before
        deadline = started + 120
        while _succeeded() - before < wanted and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        done = _succeeded() - before
        await service.shutdown(grace=1.0)
    return (done - first) / elapsed


async def run(bootstrap: str) -> dict[str, Any]:
    port = _free_port()
    receiver = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        await asyncio.to_thread(receiver.stdout.readline)
        base_url = f"http://127.0.0.1:{port}"
        bare = {
            kind: await _bare_loop(kind, f"{base_url}/bare", BARE_REQUESTS)
            for kind in ("httpx", "aiohttp")
        }
        best: TransportKind = max(bare, key=lambda k: bare[k])  # type: ignore[arg-type]
        alone = await _service_run(bootstrap, base_url, best, hung=False)
        beside_hung = await _service_run(bootstrap, base_url, best, hung=True)
    finally:
        receiver.kill()
        with contextlib.suppress(Exception):
            receiver.wait(timeout=5)
    return {
        "name": "delivery",
        "figures": {
            "deliveries_per_s": round(alone, 1),
            "transport": best,
            "bare_httpx_per_s": round(bare["httpx"], 1),
            "bare_aiohttp_per_s": round(bare["aiohttp"], 1),
            "with_hung_receiver_per_s": round(beside_hung, 1),
            "hung_rate_kept": round(beside_hung / alone, 3),
            "concurrency": CONCURRENCY,
        },
        "baseline": {"deliveries_per_s": round(bare[best], 1)},
        "ratio": round(alone / bare[best], 3),
        "aim": ">= 0.7 of the bare loop, >= 2,000 deliveries/s; >= 0.95 kept beside a hung receiver",
    }


if __name__ == "__main__":
    import os

    import orjson

    result = asyncio.run(run(os.environ.get("HOOKLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:39092")))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
