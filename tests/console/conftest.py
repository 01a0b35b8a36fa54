"""Fixtures for the console: the admin app in this process with named tokens of each role."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from services.admin import create_admin_app
from shared.settings import Settings
from shared.topics import Topics

ADMIN_TOKEN = "console-admin-token-0123456789"
OPERATOR_TOKEN = "console-operator-token-0123456789"
VIEWER_TOKEN = "console-viewer-token-0123456789"
NAMED_TOKENS = [
    f"ada:admin:{ADMIN_TOKEN}",
    f"otto:operator:{OPERATOR_TOKEN}",
    f"vera:viewer:{VIEWER_TOKEN}",
]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console_settings(settings: Settings) -> Settings:
    tokens = [*settings.admin_token, *(SecretStr(t) for t in NAMED_TOKENS)]
    return settings.model_copy(update={"admin_token": tokens})


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


@dataclass
class Browserless:
    """The console over HTTP in this process: a cookie jar, as a browser keeps one."""

    client: httpx.AsyncClient
    app: Starlette

    async def sign_in(self, token: str) -> httpx.Response:
        form = await self.client.get("/console/sign-in")
        return await self.client.post(
            "/console/sign-in", data={"csrf": csrf_of(form.text), "token": token}
        )


@pytest.fixture
async def console(settings: Settings, topics: Topics) -> AsyncIterator[Browserless]:
    app = create_admin_app(console_settings(settings))
    async with app.router.lifespan_context(app):
        # https: the session cookie is Secure, and a cookie jar keeps to that.
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="https://admin", timeout=30
        ) as client:
            yield Browserless(client, app)


class AuditRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        entry = getattr(record, "audit", None)
        if isinstance(entry, dict):
            self.entries.append(entry)


@pytest.fixture
def audit() -> Iterator[AuditRecords]:
    handler = AuditRecords()
    logger = logging.getLogger("hookline.admin.audit")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)
