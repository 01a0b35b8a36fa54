"""Fixtures for the admin API: the app in this process, or as separate uvicorn processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from services.admin import create_admin_app
from services.admin.context import AdminContext
from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


@dataclass
class Admin:
    """The admin app running in this process, with a client that carries the token."""

    client: httpx.AsyncClient
    app: Starlette
    settings: Settings
    topics: Topics

    @property
    def ctx(self) -> AdminContext:
        ctx: AdminContext = self.app.state.admin
        return ctx


@contextlib.asynccontextmanager
async def running_admin(settings: Settings, topics: Topics) -> AsyncIterator[Admin]:
    app = create_admin_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://admin", headers=AUTH, timeout=30
        ) as client:
            yield Admin(client, app, settings, topics)


@pytest.fixture
async def admin(settings: Settings, topics: Topics) -> AsyncIterator[Admin]:
    async with running_admin(settings, topics) as running:
        yield running


# -- separate processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``Settings()`` in a child equal ``settings``."""
    assert settings.secret_key is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        HOOKLINE_TOPIC_PREFIX=settings.topic_prefix,
        HOOKLINE_TOPIC_PARTITIONS=str(settings.topic_partitions),
        HOOKLINE_SECRET_KEY=settings.secret_key.get_secret_value(),
        HOOKLINE_ADMIN_TOKEN=",".join(t.get_secret_value() for t in settings.admin_token),
        HOOKLINE_ALLOW_PRIVATE_DESTINATIONS="1" if settings.allow_private_destinations else "0",
        HOOKLINE_ALLOW_INSECURE_URLS="1" if settings.allow_insecure_urls else "0",
        HOOKLINE_RETRY_SCHEDULE=",".join(str(s) for s in settings.retry_schedule),
        HOOKLINE_SECRET_GRACE_PERIOD=str(settings.secret_grace_period),
        HOOKLINE_LOG_LEVEL=settings.log_level,
    )
    if settings.admin_view_path is not None:
        env["HOOKLINE_ADMIN_VIEW_PATH"] = str(settings.admin_view_path)
    return env


@dataclass
class AdminProcess:
    """``hookline admin`` on a free loopback port."""

    settings: Settings
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AdminProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "admin"],
            cwd=ROOT,
            env={
                **settings_env(self.settings),
                "HOOKLINE_HOST": "127.0.0.1",
                "HOOKLINE_ADMIN_PORT": str(self.port),
                # Each replica keeps an operations view of its own, as each pod does.
                "HOOKLINE_ADMIN_VIEW_PATH": str(self.log_path.with_suffix(".view.sqlite3")),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> AdminProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"admin process exited with {self.proc.returncode}: "
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError("admin process not ready: " + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=AUTH, timeout=30)


@pytest.fixture
def admin_processes(tmp_path: Path) -> Iterator[list[AdminProcess]]:
    """Append started :class:`AdminProcess` objects; each is stopped after the test."""
    started: list[AdminProcess] = []
    yield started
    for proc in started:
        proc.stop()


def spawn(started: list[AdminProcess], settings: Settings, log_path: Path) -> AdminProcess:
    proc = AdminProcess(settings, log_path).start()
    started.append(proc)
    return proc
