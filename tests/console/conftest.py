"""Fixtures for the console: the admin app in this process with named tokens of each role."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.applications import Starlette

from services.admin import create_admin_app
from services.admin.auth import token_digest
from shared.settings import Settings
from shared.topics import Topics
from tests.admin.conftest import Admin, running_admin

ADMIN_TOKEN = "console-admin-token-0123456789"
OPERATOR_TOKEN = "console-operator-token-0123456789"
VIEWER_TOKEN = "console-viewer-token-0123456789"
NAMED_TOKENS = {"ada": ("admin", ADMIN_TOKEN), "otto": ("operator", OPERATOR_TOKEN)}
NAMED_TOKENS["vera"] = ("viewer", VIEWER_TOKEN)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console_settings(settings: Settings, folder: Path) -> Settings:
    """``settings`` with a tokens file naming ada (admin), otto (operator), vera (viewer)."""
    path = folder / "admin-tokens.yaml"
    entries = [
        {"name": name, "role": role, "sha256": token_digest(token)}
        for name, (role, token) in NAMED_TOKENS.items()
    ]
    path.write_text(yaml.safe_dump(entries))
    return settings.model_copy(update={"admin_tokens_file": path})


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
async def console(settings: Settings, topics: Topics, tmp_path: Path) -> AsyncIterator[Browserless]:
    app = create_admin_app(console_settings(settings, tmp_path))
    async with app.router.lifespan_context(app):
        # https: the session cookie is Secure, and a cookie jar keeps to that.
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="https://admin", timeout=30
        ) as client:
            yield Browserless(client, app)


@pytest.fixture
async def admin(settings: Settings, topics: Topics) -> AsyncIterator[Admin]:
    """The admin API in this process, with the plain (admin) test token."""
    async with running_admin(settings, topics) as running:
        yield running
