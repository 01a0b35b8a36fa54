"""A service's Kafka parts started while Kafka may not answer: retried with backoff until
they start or the service is told to stop, never an exit.

:class:`KafkaStartup` runs the service's start-up ``attempt`` (topics, the config view,
producers, consumers) in a task of its own, each attempt on a fresh
:class:`~contextlib.AsyncExitStack`. An attempt that fails because Kafka did not answer
(:data:`RETRIED`, or a cancellation that came from inside the client, not from us) has
its stack closed and is tried again after a backoff that doubles up to ``max_backoff``.
The outage is logged once when it starts, then at most once per ``log_every`` seconds
with the number of attempts, and once when Kafka answers. Anything else (a refused
credential or ACL, a setting that cannot work) is fatal and raised.

Readiness reads :meth:`KafkaStartup.verdict`: not ready, with the reason, until the
attempt succeeded; then ready while the client given to :meth:`KafkaStartup.watch`
answers a metadata request (checked at most once a second), so readiness follows an
outage that comes later too, both ways, within seconds.

Lifecycle: :meth:`KafkaStartup.open` returns the started stack (the caller closes it
when the service stops) or None when ``stop`` was set first. ASGI apps, whose lifespan
must finish before the server answers ``/readyz``, use :meth:`KafkaStartup.in_background`.
A fatal error met in the background is kept (:func:`fatal_error`), logged, and the
process is sent SIGTERM so that its entry point stops and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from shared._aiokafka_internals import throttle_failed_metadata_updates
from shared.errors import BrokerUnavailable
from shared.health import Readiness, Verdict
from shared.kafka import GroupMembership, install_membership, kafka_client_options
from shared.logging import limit_repeats
from shared.settings import Settings

log = logging.getLogger("hookline.startup")

#: What Kafka being away looks like at start; anything else is fatal.
RETRIED: tuple[type[BaseException], ...] = (BrokerUnavailable, KafkaError, OSError, TimeoutError)

Attempt = Callable[[AsyncExitStack], Coroutine[Any, Any, None]]

_fatal: list[BaseException] = []


def fatal_error() -> BaseException | None:
    """The error that stopped a background start-up in this process, if one did."""
    return _fatal[0] if _fatal else None


# Seconds a cancelled start attempt gets to end before a stop goes on without it.
CANCEL_GRACE = 10.0


class KafkaStartup:
    """Starts ``service``'s Kafka parts with backoff; its verdict is readiness's."""

    def __init__(
        self,
        service: str,
        *,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        log_every: float = 30.0,
        probe_every: float = 1.0,
    ) -> None:
        self.service = service
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._log_every = log_every
        self._probe_every = probe_every
        self.started = False
        self.attempts = 0
        self._tried = asyncio.Event()  # set when an attempt has ended, either way
        self.problem: str | None = None
        self._client: Any = None
        self._probed_at = 0.0
        self._answered = True
        self._access: Any = None

    def register(self, readiness: Readiness, *, secured: bool = False) -> None:
        """Readiness's ``kafka`` check, and ``kafka_access`` on a secured cluster."""
        readiness.add("kafka", self.verdict)
        if secured:
            readiness.add("kafka_access", self._access_verdict)

    async def check_access(self, settings: Settings, stack: AsyncExitStack) -> None:
        """On a secured cluster: the service's grants checked now (a refusal is fatal),
        then re-checked while it runs (:class:`~shared.kafka_access.AccessWatch`)."""
        if settings.kafka_security_protocol == "PLAINTEXT":
            return
        from shared.kafka_access import AccessWatch, check_access

        await check_access(settings, self.service)
        self._access = await stack.enter_async_context(AccessWatch(settings, self.service))

    def _access_verdict(self) -> Verdict:
        if self._access is None:
            return Verdict(False, "not checked yet")
        if self._access.problem is not None:
            return Verdict(False, str(self._access.problem))
        return Verdict(True)

    # -- readiness ------------------------------------------------------------------------

    async def watch(self, bootstrap_servers: str, stack: AsyncExitStack) -> None:
        """A client of readiness's own, asked for metadata once started (closed with
        ``stack``): the service's working clients are left to their work."""
        client = AIOKafkaClient(
            bootstrap_servers=bootstrap_servers,
            client_id=f"hookline-{self.service}-probe",
            **kafka_client_options(),
        )
        stack.push_async_callback(client.close)
        await client.bootstrap()
        self._client = client

    async def verdict(self) -> Verdict:
        if not self.started:
            why = self.problem or "connecting"
            return Verdict(False, f"waiting for Kafka (attempt {self.attempts}): {why}")
        if self._client is None:
            return Verdict(True)
        now = time.monotonic()
        if now - self._probed_at >= self._probe_every:
            self._probed_at = now
            try:
                await asyncio.wait_for(self._client.fetch_all_metadata(), 1.5)
                self._answered = True
            except Exception:  # any failure to answer is a no
                self._answered = False
        return Verdict(True) if self._answered else Verdict(False, "Kafka does not answer")

    def restarting(self, why: str) -> None:
        """The parts failed while running and are started again: not ready meanwhile."""
        self.started, self.problem, self._client = False, why, None

    # -- starting -------------------------------------------------------------------------

    async def open(self, attempt: Attempt, stop: asyncio.Event) -> AsyncExitStack | None:
        """Run ``attempt`` until it succeeds (its stack returned) or ``stop`` is set (None)."""
        delay = self._backoff
        began = time.monotonic()
        next_line = 0.0
        failures = 0
        while not stop.is_set():
            self.attempts += 1
            stack = AsyncExitStack()
            error = await self._try(attempt, stack, stop)
            self._tried.set()
            if error is None:
                if stop.is_set():
                    await close_quietly(stack)
                    return None
                self.started, self.problem = True, None
                if failures:
                    log.info(
                        "Kafka answered; started",
                        extra={
                            "component": self.service,
                            "attempts": self.attempts,
                            "waited_s": round(time.monotonic() - began, 1),
                        },
                    )
                return stack
            failures += 1
            self.problem = f"{type(error).__name__}: {error}"[:300]
            now = time.monotonic()
            if now >= next_line:
                next_line = now + self._log_every
                log.warning(
                    "Kafka is not reachable; retrying with backoff"
                    if failures == 1
                    else "Kafka is still not reachable; retrying with backoff",
                    extra={
                        "component": self.service,
                        "attempts": failures,
                        "waited_s": round(now - began, 1),
                        "error": self.problem,
                    },
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self._max_backoff)
        return None

    async def _try(
        self, attempt: Attempt, stack: AsyncExitStack, stop: asyncio.Event
    ) -> BaseException | None:
        """One attempt in a task of its own, cut short by ``stop``; the retried error or None."""
        task = asyncio.create_task(attempt(stack), name=f"start-{self.service}")
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not task.done():
            task.cancel()
            # Bounded: a client that swallows its cancellation must not hold the stop.
            await asyncio.wait({task}, timeout=CANCEL_GRACE)
            if not task.done():
                log.warning(
                    "a start attempt did not end when cancelled; left behind",
                    extra={"component": self.service, "waited_s": CANCEL_GRACE},
                )
            await close_quietly(stack)
            return None
        if task.cancelled():
            # Cancelled from inside the client (a connection torn down while it started).
            await close_quietly(stack)
            return asyncio.CancelledError("the Kafka client was cancelled while starting")
        error = task.exception()
        if error is None:
            return None
        await close_quietly(stack)
        if isinstance(error, RETRIED):
            return error
        raise error

    @contextlib.asynccontextmanager
    async def in_background(self, attempt: Attempt, *, settle: float = 10.0) -> AsyncIterator[None]:
        """Start in a task while the block runs (an ASGI lifespan serving meanwhile); close
        what started when the block ends.

        The block is entered once the first attempt has ended or ``settle`` seconds have
        passed: with Kafka there, the app is ready when its server starts serving, as an
        app whose lifespan starts everything inline would be; without it, the server
        answers (not ready) while the attempts go on.
        """
        stop = asyncio.Event()
        task = asyncio.create_task(self._open_or_fail(attempt, stop), name=f"up-{self.service}")
        tried = asyncio.create_task(self._tried.wait())
        await asyncio.wait({task, tried}, timeout=settle, return_when=asyncio.FIRST_COMPLETED)
        tried.cancel()
        try:
            yield
        finally:
            stop.set()
            stack = await task
            if stack is not None:
                await stack.aclose()

    async def _open_or_fail(self, attempt: Attempt, stop: asyncio.Event) -> AsyncExitStack | None:
        try:
            return await self.open(attempt, stop)
        except Exception as exc:
            _fatal.append(exc)
            self.problem = str(exc)
            log.error(
                "cannot start; stopping", extra={"component": self.service, "error": str(exc)}
            )
            os.kill(os.getpid(), signal.SIGTERM)
            return None


async def close_quietly(stack: AsyncExitStack) -> None:
    """Close what started (a failed attempt, or parts that failed while running): a
    client that fails to close is not news then."""
    try:
        await stack.aclose()
    except (Exception, asyncio.CancelledError) as exc:
        task = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
            raise  # this task is being cancelled: not the client's doing
        log.debug("closing Kafka parts failed", extra={"error": repr(exc)})


def quiet_client_logs() -> None:
    """httpx logs every request at INFO with its whole URL: a line per delivery (thousands
    a second), and a subscription's URL may hold a token. Services name receivers by host
    in their own lines instead."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def prepare_process(settings: Settings) -> None:
    """For a service's entry point, after logging is configured: the Kafka client's
    repeated lines limited, its failed metadata updates throttled, and its group
    consumers' membership (replica id, timeouts)."""
    limit_repeats(("aiokafka",), settings.outage_log_interval)
    throttle_failed_metadata_updates()
    quiet_client_logs()
    session_ms = int(settings.kafka_session_timeout * 1000)
    install_membership(
        GroupMembership(
            instance_id=settings.replica_id if settings.kafka_static_membership else None,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 5),
        )
    )
