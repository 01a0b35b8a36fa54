"""The publisher: one idempotent ``acks=all`` producer and a deadline on every write.

Lifecycle: ``async with Publisher(...)`` starts the producer; :meth:`publish`
returns only once the broker has acknowledged the record, or raises
:class:`~shared.errors.PublishTimeout` when the deadline passes first; on exit
the publisher drains (flushes what is in flight, up to ``drain_timeout``) and
stops the producer.

A write that misses its deadline is not withdrawn: if it already sits in the
producer's batch, it may still reach the topic later. That is safe: the caller
answered 503, the provider retries with the same delivery id, and both copies
carry the same CloudEvents id, which the dispatcher deduplicates on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from shared.cloudevents import KafkaRecord
from shared.errors import BodyTooLarge, BrokerUnavailable, PublishTimeout
from shared.kafka import create_producer
from shared.settings import Settings
from shared.topics import INBOUND_MAX_BYTES

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        max_in_flight: int = 2048,
        drain_timeout: float = 10.0,
        start_timeout: float = 30.0,
        **producer_options: Any,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._slots = asyncio.Semaphore(max_in_flight)
        self._drain_timeout = drain_timeout
        self._start_timeout = start_timeout
        self._options = producer_options
        self._producer: AIOKafkaProducer | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def __aenter__(self) -> Self:
        options: dict[str, Any] = {
            "max_request_size": INBOUND_MAX_BYTES,
            # aiokafka keeps one open batch per partition and makes a send wait while it
            # is full, and a full batch wakes every waiting send when it drains (most
            # find the next batch full again): with many requests in flight for one
            # webhook (one key, one partition) that herd cost more than the requests.
            # The batch only grows as records come (nothing is preallocated), so it is
            # sized for a burst: 8 MiB, six partitions to a request stay well under
            # the broker's 100 MiB request limit.
            "max_batch_size": 8 * 1024 * 1024,
            # zstd: aiokafka's lz4 is the slow high-compression mode (about 30 µs per
            # GitHub payload, a tenth of the request path's CPU); zstd costs a fifth of
            # that in a batch and writes half the bytes. Writing uncompressed was
            # cheaper still here, but the broker's latency tail grew with the volume.
            "compression_type": "zstd",
            **self._options,
        }
        # linger 1 ms: under load, records gather while a request is in flight anyway;
        # at moderate rates the pipe is often idle and each record would go alone,
        # and a produce round trip costs this process as much CPU as a request.
        producer = create_producer(
            self._bootstrap, client_id="hookline-ingress", linger_ms=1, **options
        )
        try:
            await asyncio.wait_for(producer.start(), self._start_timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise BrokerUnavailable(f"cannot start the producer: {exc!r}") from exc
        self._producer = producer
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.flush(), self._drain_timeout)
        except (TimeoutError, KafkaError):
            log.warning("in-flight writes not acknowledged before shutdown")
        await producer.stop()

    async def publish(self, record: KafkaRecord, *, timeout: float) -> None:
        """Write ``record`` and wait for ``acks=all``, within ``timeout`` seconds."""
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("the publisher is not running")
        try:
            # asyncio.timeout rather than wait_for: no extra task per write.
            async with asyncio.timeout(timeout), self._slots:
                # The slot bounds how many records wait in the producer at once; it is
                # released when the acknowledgement (or the deadline) comes.
                delivery = await producer.send(
                    self._topic, record.value, key=record.key, headers=record.headers
                )
                await delivery
        except TimeoutError:
            raise PublishTimeout(f"no acknowledgement within {timeout}s") from None
        except MessageSizeTooLargeError as exc:
            raise BodyTooLarge("the event is too large for the inbound topic") from exc
        except KafkaError as exc:
            raise BrokerUnavailable(f"write failed: {exc!r}") from exc


def open_publisher(settings: Settings, topic: str) -> Publisher:
    """The ingress's publisher. (librdkafka through confluent-kafka was measured behind
    this interface and cost more CPU per request than aiokafka: bench/README.md.)"""
    return Publisher(settings.kafka_bootstrap_servers, topic)
