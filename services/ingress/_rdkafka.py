"""The publisher on librdkafka (``confluent-kafka``): the same contract as :class:`Publisher`.

Lifecycle: ``async with RdkafkaPublisher(...)`` makes the producer and waits (up to
``start_timeout``) until it has the topic's metadata; :meth:`publish` returns only
once the broker has acknowledged the record (``acks=all``, idempotent), or raises
:class:`~shared.errors.PublishTimeout` when the deadline passes first; on exit it
flushes what is in flight (up to ``drain_timeout``) and stops its poll thread.

librdkafka batches, compresses and talks to the brokers on its own C threads. Its
delivery reports are served by one poll thread here, which hands each poll's reports
to the event loop in one call (one wake-up per poll, not one per record).
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from shared.cloudevents import KafkaRecord
from shared.errors import BodyTooLarge, BrokerUnavailable, PublishTimeout
from shared.kafka_security import KafkaSecurity, current_security
from shared.topics import INBOUND_MAX_BYTES

_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE}


def rdkafka_security(security: KafkaSecurity) -> dict[str, Any]:
    """The project's Kafka security as librdkafka configuration."""
    config: dict[str, Any] = {"security.protocol": security.protocol.lower()}
    if security.uses_tls:
        if security.cafile is not None:
            config["ssl.ca.location"] = str(security.cafile)
        config["ssl.endpoint.identification.algorithm"] = (
            "https"
            if security.ssl_context is None or security.ssl_context.check_hostname
            else "none"
        )
        for option, path in (
            ("ssl.certificate.location", getattr(security, "certfile", None)),
            ("ssl.key.location", getattr(security, "keyfile", None)),
        ):
            if path is not None:
                config[option] = str(path)
        key_password = getattr(security, "key_password", None)
        if key_password is not None:
            config["ssl.key.password"] = key_password
    if security.uses_sasl:
        config["sasl.mechanism"] = security.mechanism
        provider = security.token_provider
        if provider is not None:

            def token(_config: str) -> tuple[str, float]:
                # librdkafka asks again before the expiry given; the file is re-read
                # only when it changed (the provider's own rule).
                import time

                return provider.current(), time.time() + 60

            config["oauth_cb"] = token
        else:
            config["sasl.username"] = security.username
            config["sasl.password"] = security.password
    return config


class RdkafkaPublisher:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        max_in_flight: int = 2048,
        drain_timeout: float = 10.0,
        start_timeout: float = 30.0,
        security: KafkaSecurity | None = None,
        **producer_config: Any,
    ) -> None:
        self._topic = topic
        self._slots = asyncio.Semaphore(max_in_flight)
        self._drain_timeout = drain_timeout
        self._start_timeout = start_timeout
        self._config: dict[str, Any] = {
            **rdkafka_security(security or current_security()),
            "bootstrap.servers": bootstrap_servers,
            "client.id": "hookline-ingress",
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "zstd",
            # As the aiokafka publisher: records gather while a request is in flight.
            "linger.ms": 1,
            "message.max.bytes": INBOUND_MAX_BYTES + 64 * 1024,
            "queue.buffering.max.messages": max_in_flight * 2,
            **producer_config,
        }
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        # Reports gathered by the poll thread during one poll, handed over together.
        self._reports: list[tuple[asyncio.Future[None], KafkaError | None]] = []

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        try:
            producer = Producer(self._config)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot make the producer: {exc}") from exc
        try:
            await asyncio.to_thread(producer.list_topics, self._topic, timeout=self._start_timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot start the producer: {exc}") from exc
        self._producer = producer
        self._stopping.clear()
        self._poller = threading.Thread(
            target=self._poll, args=(producer,), name="rdkafka-reports", daemon=True
        )
        self._poller.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        left = await asyncio.to_thread(producer.flush, self._drain_timeout)
        if left:
            import logging

            logging.getLogger(__name__).warning(
                "in-flight writes not acknowledged before shutdown", extra={"left": left}
            )
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)

    def _poll(self, producer: Producer) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stopping.is_set():
            producer.poll(0.1)
            if self._reports:
                reports, self._reports = self._reports, []
                try:
                    loop.call_soon_threadsafe(_settle, reports)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return

    def _report(self, future: asyncio.Future[None], err: KafkaError | None, _: Message) -> None:
        # On the poll thread, inside producer.poll().
        self._reports.append((future, err))

    async def publish(self, record: KafkaRecord, *, timeout: float) -> None:
        """Write ``record`` and wait for ``acks=all``, within ``timeout`` seconds."""
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            raise BrokerUnavailable("the publisher is not running")
        future: asyncio.Future[None] = loop.create_future()
        try:
            async with asyncio.timeout(timeout), self._slots:
                try:
                    producer.produce(
                        self._topic,
                        record.value,
                        record.key,
                        headers=record.headers,  # type: ignore[arg-type]
                        on_delivery=lambda err, msg: self._report(future, err, msg),
                    )
                except KafkaException as exc:
                    raise _failure(exc.args[0]) from exc
                except BufferError as exc:
                    raise BrokerUnavailable("the producer's queue is full") from exc
                await future
        except TimeoutError:
            raise PublishTimeout(f"no acknowledgement within {timeout}s") from None


def _failure(err: KafkaError) -> Exception:
    if err.code() in _TOO_LARGE:
        return BodyTooLarge("the event is too large for the inbound topic")
    return BrokerUnavailable(f"write failed: {err.str()}")


def _settle(reports: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
    for future, err in reports:
        if future.done():  # the request's deadline passed first
            continue
        if err is None:
            future.set_result(None)
        else:
            future.set_exception(_failure(err))
