"""Health, readiness and metrics endpoints shared by every service.

Liveness (``/healthz``) says the process can answer. Readiness (``/readyz``)
runs named checks (config view caught up, broker reachable, …) and answers
503 listing the ones that fail: ``{"status", "checks": {name: bool}}``, plus
``"reasons": {name: text}`` for failing checks that said why (a check may return
a :class:`Verdict` instead of a bool). ``/metrics`` serves Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp


@dataclass(frozen=True, slots=True)
class Verdict:
    """A readiness check's answer with its reason (what is not ready, and where)."""

    ready: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.ready


Check = Callable[[], bool | Verdict | Awaitable[bool | Verdict]]


class Readiness:
    """Named readiness checks; each returns True (or a ready :class:`Verdict`) when its
    part is ready."""

    def __init__(self, timeout: float = 2.0) -> None:
        self._checks: dict[str, Check] = {}
        self._timeout = timeout

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self) -> dict[str, bool]:
        return {name: verdict.ready for name, verdict in (await self.verdicts()).items()}

    async def verdicts(self) -> dict[str, Verdict]:
        results: dict[str, Verdict] = {}
        for name, check in self._checks.items():
            try:
                outcome = check()
                if inspect.isawaitable(outcome):
                    outcome = await asyncio.wait_for(outcome, self._timeout)
                results[name] = outcome if isinstance(outcome, Verdict) else Verdict(bool(outcome))
            except Exception as exc:  # a failing check means "not ready", never a 500
                results[name] = Verdict(False, f"the check failed: {exc!r}")
        return results


def health_routes(readiness: Readiness, registry: CollectorRegistry = REGISTRY) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        verdicts = await readiness.verdicts()
        ok = all(v.ready for v in verdicts.values())
        body: dict[str, Any] = {
            "status": "ready" if ok else "not ready",
            "checks": {name: v.ready for name, v in verdicts.items()},
        }
        reasons = {name: v.reason for name, v in verdicts.items() if not v.ready and v.reason}
        if reasons:
            body["reasons"] = reasons
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM and SIGINT to the service that runs it.

    Each service drains its own work (a transaction, in-flight deliveries)
    before its HTTP server goes, so the service, not uvicorn, owns the signals.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def quiet_server(app: ASGIApp, host: str, port: int, **options: Any) -> QuietServer:
    """A :class:`QuietServer` for ``app`` with hookline's defaults (no access log, JSON logs)."""
    config: dict[str, Any] = {"log_config": None, "access_log": False, "server_header": False}
    config.update(options)
    return QuietServer(uvicorn.Config(app, host=host, port=port, **config))


class HealthServer:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` on ``port`` while in its context."""

    def __init__(
        self,
        readiness: Readiness,
        *,
        host: str,
        port: int,
        sockets: list[socket.socket] | None = None,
    ) -> None:
        app = Starlette(routes=health_routes(readiness))
        self._server = quiet_server(app, host, port, lifespan="off")
        self._sockets = sockets  # bound already (shared with other processes), else None
        self._task: asyncio.Task[None] | None = None

    @property
    def failed(self) -> bool:
        """True once the server has stopped without being asked (e.g. its port was taken)."""
        return self._task is not None and self._task.done() and not self._server.should_exit

    async def until(self, stop: asyncio.Event) -> None:
        """Return when ``stop`` is set or the server has stopped on its own."""
        assert self._task is not None
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({self._task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()

    async def _serve(self) -> None:
        # uvicorn exits when it cannot bind (its log says why); from a task that would
        # escape the event loop. The task just ends, and ``failed`` tells.
        with contextlib.suppress(SystemExit):
            await self._server.serve(sockets=self._sockets)

    async def __aenter__(self) -> HealthServer:
        self._task = asyncio.create_task(self._serve(), name="health-server")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task


async def serve_until_signalled(
    server: QuietServer, *, name: str, sockets: list[socket.socket] | None = None
) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully; 0, or 1 when it failed to start.

    uvicorn then stops accepting connections, lets in-flight requests finish and
    runs the app's lifespan shutdown (which drains its Kafka clients). ``sockets``, when
    given, are served instead of the host and port of the server's config (bound, and
    put to listen only once the app's lifespan has started).
    """
    loop = asyncio.get_running_loop()

    def stop() -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await server.serve(sockets=sockets)
    except (Exception, SystemExit) as exc:  # uvicorn exits when its lifespan fails
        logging.getLogger(f"hookline.{name}").error("server failed", extra={"error": repr(exc)})
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if not server.started:
        logging.getLogger(f"hookline.{name}").error("server did not start")
        return 1
    from shared.startup import fatal_error  # the start-up helper imports this module

    if fatal_error() is not None:
        return 1  # its start-up met what no retry fixes (logged there)
    logging.getLogger(f"hookline.{name}").info("stopped")
    return 0


def stop_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, for a service's main loop to wait on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_service(main: Coroutine[Any, Any, int]) -> int:
    """Run a service's main coroutine on uvloop (where available) and return its exit code."""
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
