"""Attempt: one signed request for a delivery that holds a lane slot, and the stall watchdog.

:meth:`Attempts.send` signs the body with the subscription's active secrets (the
config view decrypts and caches them), takes a place in the global pool
(``max_in_flight``) and POSTs within one deadline scope, which the lane notes while
the request is on the wire; the lane slot is given back when it ends. It never
raises for anything the receiver or the network does: the outcome says what
happened (error ``stalled`` when the watchdog gave the request up).

Lifecycle: ``async with attempts`` runs the stall watchdog, which defers what waits
on a stalled lane and gives up the requests a stalled lane has held for
``abandon_after`` seconds, so a hung receiver holds neither its records' offsets
nor the global pool for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import httpx

from services.delivery._codec import Due
from services.delivery._isolation import CircuitBreakers, Lanes
from services.delivery._notices import host_of
from services.delivery._sender import HttpOutcome, Sender
from services.delivery._signing import signature_headers
from services.delivery._tls import ClientCertificates
from services.delivery._tracing import traced_attempt
from shared import tracing
from shared.config_view import ConfigView
from shared.entities import Subscription
from shared.errors import SecretError
from shared.tracing import propagation

log = logging.getLogger(__name__)

STALLED = "stalled"


class Attempts:
    """Sends the requests; shared by every source of due deliveries."""

    def __init__(
        self,
        *,
        view: ConfigView,
        sender: Sender,
        lanes: Lanes,
        breakers: CircuitBreakers,
        max_in_flight: int,
        stall_after: float,
        abandon_after: float,
        certificates: ClientCertificates | None = None,
    ) -> None:
        self._view = view
        self._sender = sender
        self._certificates = certificates
        self._lanes = lanes
        self._breakers = breakers
        self._slots = asyncio.Semaphore(max_in_flight)
        self._watch_every = max(0.05, min(stall_after, abandon_after) / 2)
        self._abandoned: set[asyncio.Timeout] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._watchdog = asyncio.create_task(self._watch(), name="delivery-stall-watchdog")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._watch_every)
            self._lanes.wake_stalled()
            # A subscription whose breaker is open has only its half-open probe out: a
            # probe to a hung receiver is given up like the requests of a stalled lane.
            expired = self._lanes.abandon_overdue(suspect=self._breakers.is_open)
            if expired:
                self._abandoned.update(expired)
                log.warning("gave up requests of a stalled lane", extra={"count": len(expired)})

    async def send(self, due: Due, sub: Subscription) -> HttpOutcome:
        """POST ``due`` to ``sub``; its lane slot (taken by the caller) is released here."""
        try:
            async with self._slots:
                if tracing.enabled:
                    return await traced_attempt(self._request, due, sub)
                return await self._request(due, sub)
        finally:
            self._lanes.release(sub.id)

    async def _request(self, due: Due, sub: Subscription) -> HttpOutcome:
        now = datetime.now(UTC)
        try:
            secrets = self._view.secrets(sub, now)
            custom = self._view.headers(sub)
        except SecretError:
            log.error(
                "subscription secret does not decrypt",
                extra={"subscription": sub.id, "host": host_of(sub.url)},
            )
            return HttpOutcome(None, "secret_error", 0.0)
        body = due.body.encode()
        headers = signature_headers(due.message_id, body, secrets, now)
        headers["content-type"] = "application/json"
        if custom:
            # The subscription's own headers, never over the webhook ones.
            headers = {**custom, **headers}
        timeout = sub.timeout
        client = None
        if sub.client_certificate is not None:
            client = self._client_of(sub)
            if client is None:
                return HttpOutcome(None, "client_certificate_error", 0.0)
        if tracing.enabled:
            # The attempt's span (made by traced_attempt): the receiver may join the trace.
            headers.update(propagation.current_http_headers())
        started = time.perf_counter()
        # One deadline scope for the request: the sender's own timeout (or the
        # subscription's), which the stall watchdog may also bring forward (it then notes
        # the scope as abandoned).
        scope = asyncio.timeout(timeout or self._sender.request_timeout)
        try:
            async with scope:
                self._lanes.sending(sub.id, scope)
                try:
                    if timeout is None and client is None:
                        return await self._sender.send(sub.url, headers, body, scope)
                    return await self._sender.send(
                        sub.url, headers, body, scope, timeout=timeout, client=client
                    )
                finally:
                    self._lanes.sent(sub.id, scope)
        except TimeoutError:
            error = STALLED if scope in self._abandoned else "timeout"
            return HttpOutcome(None, error, (time.perf_counter() - started) * 1000)
        finally:
            self._abandoned.discard(scope)

    def _client_of(self, sub: Subscription) -> httpx.AsyncClient | None:
        """The client presenting ``sub``'s certificate; None (logged) when it cannot."""
        key = ClientCertificates.key_of(sub)
        if self._certificates is None or key is None:
            return None
        try:
            context = self._certificates.context(sub)
        except SecretError as exc:
            log.error(
                "subscription client certificate does not load",
                extra={"subscription": sub.id, "host": host_of(sub.url), "error": str(exc)},
            )
            return None
        return self._sender.client_for(key, context)
