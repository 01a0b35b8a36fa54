"""A whole hookline on loopback for end-to-end and fault tests.

:class:`Stack` runs replicas of the three services as real child processes
(``python -m cli <service>``), each with its own ports and a log file;
:class:`Receiver` is a subscriber's HTTP server that verifies every delivery
with the independent ``standardwebhooks`` package and records what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.supervisor import HOOKLINE, ServiceProcess
from shared.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    type: str
    data: dict[str, Any]
    signatures: int


@dataclass
class Receiver:
    """A subscriber endpoint; ``secret`` verifies every request or it is refused."""

    secret: str
    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    rejected: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _app(self) -> Starlette:
        verifier = Verifier(self.secret)

        async def hook(request: Request) -> Response:
            body = await request.body()
            try:
                verifier.verify(body, dict(request.headers))
            except WebhookVerificationError:
                self.rejected += 1
                return Response(status_code=401)
            event = orjson.loads(body)
            self.deliveries.append(
                Delivery(
                    webhook_id=request.headers["webhook-id"],
                    type=event["type"],
                    data=event["data"],
                    signatures=len(request.headers["webhook-signature"].split()),
                )
            )
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    async def __aenter__(self) -> Receiver:
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)

    def for_run(self, run_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.data.get("run_id") == run_id]


@dataclass
class Replica:
    name: str
    process: ServiceProcess
    ports: dict[str, int]


class Stack:
    """Replicas of ingress, admin, dispatcher and delivery for one test's settings."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        *,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        **extra_env: str,
    ) -> None:
        self.settings = settings
        self.log_dir = log_dir
        # Settings for one service only (its own Kafka user, say), over the common ones.
        self.service_env = service_env or {}
        self.replicas: dict[str, Replica] = {}
        schedule = ",".join(str(s) for s in settings.retry_schedule)
        self.env = {
            "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
            "HOOKLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "HOOKLINE_SECRET_KEY": (
                settings.secret_key.get_secret_value() if settings.secret_key else ""
            ),
            "HOOKLINE_ADMIN_TOKEN": ",".join(t.get_secret_value() for t in settings.admin_token),
            "HOOKLINE_ALLOW_PRIVATE_DESTINATIONS": "1",
            "HOOKLINE_ALLOW_INSECURE_URLS": "1",
            "HOOKLINE_RETRY_SCHEDULE": schedule,
            "HOOKLINE_RETRY_JITTER": str(settings.retry_jitter),
            "HOOKLINE_BREAKER_COOLDOWN": str(settings.breaker_cooldown),
            "HOOKLINE_ENGINE": "local",
            "HOOKLINE_HOST": "127.0.0.1",
            "HOOKLINE_SHUTDOWN_GRACE": "5",
            "HOOKLINE_LOG_LEVEL": "INFO",
            **extra_env,
        }

    def add(self, service: str, index: int = 0) -> Replica:
        name = f"{service}-{index}"
        ports = {
            "ingress": free_port(),
            "admin": free_port(),
            "dispatcher": free_port(),
            "delivery": free_port(),
            "ingress_internal": free_port(),
        }
        env = {
            **self.env,
            **self.service_env.get(service, {}),
            "HOOKLINE_REPLICA_ID": name,
            "HOOKLINE_INGRESS_PORT": str(ports["ingress"]),
            "HOOKLINE_ADMIN_PORT": str(ports["admin"]),
            "HOOKLINE_DISPATCHER_PORT": str(ports["dispatcher"]),
            "HOOKLINE_DELIVERY_PORT": str(ports["delivery"]),
            "HOOKLINE_INGRESS_INTERNAL_PORT": str(ports["ingress_internal"]),
        }
        # The ingress serves its health routes on its internal port, not the public one.
        ready_port = ports["ingress_internal" if service == "ingress" else service]
        process = ServiceProcess(
            name,
            [*HOOKLINE, service],
            env=env,
            ready_url=f"http://127.0.0.1:{ready_port}/readyz",
            log_path=self.log_dir / f"{name}.log",
        )
        replica = Replica(name, process, ports)
        self.replicas[name] = replica
        return replica

    def url(self, name: str = "ingress-0") -> str:
        return f"http://127.0.0.1:{self.replicas[name].ports['ingress']}"

    def admin_url(self, name: str = "admin-0") -> str:
        return f"http://127.0.0.1:{self.replicas[name].ports['admin']}"

    async def start(self, timeout: float = 90.0) -> None:
        for replica in self.replicas.values():
            await replica.process.start()
        for replica in self.replicas.values():
            try:
                await replica.process.wait_ready(timeout)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"{exc}\n{self.tail(replica.name)}") from exc

    async def stop(self) -> None:
        for replica in self.replicas.values():
            await replica.process.stop(grace=15)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return f"(no log for {name})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


@contextlib.asynccontextmanager
async def running(stack: Stack) -> AsyncIterator[Stack]:
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()
