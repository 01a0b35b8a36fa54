"""The delivery benchmark's service side: one running delivery service, four fast
subscriptions and a hung one switched on and off, measured by the service's own counters
in rounds, in alternating windows under one backlog, and at a steady offered load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from services.delivery import DeliveryService
from services.delivery._transport import TransportKind
from services.delivery.main import tuned_process
from shared.cloudevents import encode
from shared.entities import Subscription
from shared.kafka import create_producer
from shared.settings import Settings
from testkit import TEST_SECRET_KEY
from testkit.config import put_entities, subscription
from testkit.receivers import completed

CONCURRENCY = 64
FAST_SUBSCRIPTIONS = 4
EVENTS_PER_ROUND = 4000
SECRET = f"whsec_{'A' * 43}="


@contextlib.asynccontextmanager
async def _tuned() -> AsyncIterator[None]:
    with tuned_process():
        yield


def _counter(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _succeeded() -> float:
    return _counter("hookline_delivery_attempts_total", {"outcome": "succeeded"})


def _activity() -> float:
    """Every record the service has written about a delivery (attempts and hand-ons)."""
    outcomes = ("succeeded", "failed", "exhausted", "disabled", "skipped")
    return (
        sum(_counter("hookline_delivery_attempts_total", {"outcome": o}) for o in outcomes)
        + _counter("hookline_delivery_deferred_total")
        + _counter("hookline_delivery_skipped_by_breaker_total")
    )


class _Bench:
    """One running service, four fast subscriptions, and a hung one switched on and off."""

    def __init__(self, bootstrap: str, base_url: str, kind: TransportKind) -> None:
        self.bootstrap = bootstrap
        self.base_url = base_url
        self.settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            topic_partitions=6,
            secret_key=TEST_SECRET_KEY,
            allow_private_destinations=True,
            allow_insecure_urls=True,
            max_in_flight=CONCURRENCY,
            max_in_flight_per_subscription=CONCURRENCY // FAST_SUBSCRIPTIONS,
        )
        self.kind = kind
        self.service = DeliveryService(self.settings, transport=kind)
        self._hung_version = 0
        self._published = 0

    async def __aenter__(self) -> _Bench:
        await self.service.__aenter__()
        subs = [
            subscription(f"fast-{i}", secrets=[SECRET], url=f"{self.base_url}/fast-{i}")
            for i in range(FAST_SUBSCRIPTIONS)
        ]
        await put_entities(self.bootstrap, self.service.topics.config, *subs)
        await self.set_hung(enabled=False)
        await self.service.wait_joined()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.shutdown(grace=1.0)

    async def set_hung(self, *, enabled: bool) -> None:
        self._hung_version += 1
        version = self._hung_version
        hung = subscription("hung", secrets=[SECRET], url=f"{self.base_url}/hung")
        hung = hung.model_copy(update={"enabled": enabled, "version": version})
        await put_entities(self.bootstrap, self.service.topics.config, hung)
        view = self.service.view
        assert view is not None

        def applied() -> bool:
            sub = view.subscription("hung")
            return isinstance(sub, Subscription) and sub.version == version

        while not applied():  # noqa: ASYNC110 - polls the config view
            await asyncio.sleep(0.02)

    async def quiet(self, at_least: float) -> None:
        """Wait ``at_least`` seconds, then until nothing has been written for a second."""
        await asyncio.sleep(at_least)
        last = _activity()
        while True:
            await asyncio.sleep(1.0)
            now = _activity()
            if now == last:
                return
            last = now

    async def _publish(self, events: int) -> None:
        """Publish ``events`` new lifecycle events and wait until the broker has them all."""
        topic = self.service.topics.workflow_events
        async with create_producer(self.bootstrap, linger_ms=20) as producer:
            futures = []
            for _ in range(events):
                self._published += 1
                run_id = f"run-{self._published}"
                rec = encode(completed(run_id), key=run_id, source="/bench")
                futures.append(
                    await producer.send(topic, rec.value, key=rec.key, headers=rec.headers)
                )
            await asyncio.gather(*futures)

    async def round(self) -> tuple[float, float]:
        """(fast deliveries/s, CPU µs per fast delivery) for one batch of events."""
        wanted = EVENTS_PER_ROUND * FAST_SUBSCRIPTIONS
        before = _succeeded()
        await self._publish(EVENTS_PER_ROUND)
        # The clock starts once the batch is in: publishing is not delivery work.
        cpu, started, first = time.process_time(), time.perf_counter(), _succeeded() - before
        deadline = started + 120
        while _succeeded() - before < wanted and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        done = _succeeded() - before - first
        return done / elapsed, (time.process_time() - cpu) / max(done, 1) * 1e6

    async def alternating(
        self, fast_per_s: float, windows: int, seconds: float
    ) -> dict[bool, list[tuple[float, float]]]:
        """Fast deliveries/s and CPU µs per fast delivery in windows that alternate the
        hung receiver's subscription off and on, all under one backlog (saturation).

        Rounds measured tens of seconds apart carried the machine's drift (a third up
        or down over a run, here) into every ratio; windows a second and a half long,
        alternating, put the drift on both sides alike.
        """
        span = windows * (seconds + 0.5) + 5.0
        events = int(fast_per_s / FAST_SUBSCRIPTIONS * span * 1.3)
        target = _succeeded() + events * FAST_SUBSCRIPTIONS
        await self._publish(events)
        out: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for n in range(windows):
            enabled = n % 2 == 1
            await self.set_hung(enabled=enabled)
            await asyncio.sleep(0.2)  # past the switch itself
            cpu, started, first = time.process_time(), time.perf_counter(), _succeeded()
            await asyncio.sleep(seconds)
            done = _succeeded() - first
            elapsed = time.perf_counter() - started
            out[enabled].append((done / elapsed, (time.process_time() - cpu) / max(done, 1) * 1e6))
        if _succeeded() >= target:
            raise RuntimeError("the backlog ran out before the last window: not at saturation")
        await self.set_hung(enabled=False)
        while _succeeded() < target:  # noqa: ASYNC110 - the rest of the backlog
            await asyncio.sleep(0.05)
        return out

    async def steady(self, events_per_s: float, seconds: float) -> float:
        """Fast deliveries/s while events arrive at a steady rate below capacity.

        At saturation a hung receiver's hand-offs compete for the same CPU as the
        others' deliveries; at a steady offered load isolation means the others'
        rate stays the offered rate. Counted from one second in, to skip start-up.
        """
        topic = self.service.topics.workflow_events
        async with create_producer(self.bootstrap, linger_ms=5) as producer:
            started = time.perf_counter()
            sent = 0
            window: tuple[float, float] | None = None
            while (now := time.perf_counter()) < started + seconds:
                while sent < int((now - started) * events_per_s):
                    self._published += 1
                    sent += 1
                    run_id = f"run-{self._published}"
                    rec = encode(completed(run_id), key=run_id, source="/bench")
                    await producer.send(topic, rec.value, key=rec.key, headers=rec.headers)
                if window is None and now >= started + 1.0:
                    window = (_succeeded(), now)
                await asyncio.sleep(0.01)
            assert window is not None
            return (_succeeded() - window[0]) / (time.perf_counter() - window[1])

    async def committed_lag(self) -> int:
        """Records of workflow-events not yet committed by the delivery group."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                f"{self.settings.topic_prefix}delivery"
            )
        finally:
            await admin.close()
        topic = self.service.topics.workflow_events
        committed = sum(m.offset for tp, m in offsets.items() if tp.topic == topic)
        return int(self._published - committed)
