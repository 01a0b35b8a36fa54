"""Source addresses through a real chain of proxies on loopback (127.0.0.0/8 gives each
hop an address of its own): the allowlist judges the provider's address, read from
``X-Forwarded-For``, only when the immediate peer is a trusted proxy, and the peer
itself otherwise."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

import pytest

from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from tests.ingress.helpers import github_headers
from tests.ingress.rawhttp import Connection, Forwarder, request, served_ingress

pytestmark = pytest.mark.kafka

SECRET = "proxies-secret"
PROVIDER = "127.0.0.20"
ATTACKER = "127.0.0.66"
EDGE_PROXY = "127.0.0.9"  # the Ingress controller: trusted
INNER_PROXY = "127.0.0.10"  # a CDN or load balancer in front of it: trusted
STRANGER = "127.0.0.30"  # a proxy nobody configured: not trusted


def _post(forwarded_for: str | None = None) -> bytes:
    body = b'{"ref": "refs/heads/main"}'
    headers = {
        **github_headers(SECRET, body, "push", str(uuid.uuid4())),
        "Content-Type": "application/json",
    }
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return request("/webhooks/gh/github", body, headers)


async def _status(to: tuple[str, int], source: str, forwarded_for: str | None = None) -> int:
    conn = await Connection.open(to[1], host=to[0], source=source)
    try:
        await conn.send(_post(forwarded_for))
        return (await conn.answer()).status
    finally:
        await conn.close()


async def test_the_allowlist_judges_the_provider_only_behind_trusted_proxies(
    settings: Settings, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh", provider="github", secrets=[SECRET], allowed_cidrs=[f"{PROVIDER}/32"]),
    )
    caplog.set_level(logging.INFO, logger="hookline.ingress")
    trusted = settings.model_copy(update={"trusted_proxies": [EDGE_PROXY, f"{INNER_PROXY}/32"]})
    async with served_ingress(trusted) as ingress:
        upstream = ("127.0.0.1", ingress.port)
        async with (
            Forwarder(EDGE_PROXY, upstream) as edge,
            Forwarder(INNER_PROXY, (EDGE_PROXY, edge.port)) as inner,
            Forwarder(STRANGER, upstream) as stranger,
        ):
            cases: list[tuple[str, Callable[[], Awaitable[int]], int, str]] = [
                (
                    "provider → inner proxy → edge proxy",
                    lambda: _status((INNER_PROXY, inner.port), PROVIDER),
                    202,
                    PROVIDER,
                ),
                (
                    "provider → edge proxy",
                    lambda: _status((EDGE_PROXY, edge.port), PROVIDER),
                    202,
                    PROVIDER,
                ),
                (
                    "attacker claiming the provider's address → edge proxy",
                    lambda: _status((EDGE_PROXY, edge.port), ATTACKER, forwarded_for=PROVIDER),
                    403,
                    ATTACKER,
                ),
                (
                    "attacker claiming the provider's address, straight to the ingress",
                    lambda: _status(upstream, ATTACKER, forwarded_for=PROVIDER),
                    403,
                    ATTACKER,
                ),
                (
                    "provider → an untrusted proxy",
                    lambda: _status((STRANGER, stranger.port), PROVIDER),
                    403,
                    STRANGER,
                ),
                ("provider, straight", lambda: _status(upstream, PROVIDER), 202, PROVIDER),
            ]
            got = []
            for what, post, _, _ in cases:
                caplog.clear()
                status = await post()
                line = next(r for r in caplog.records if r.getMessage() == "webhook request")
                got.append((what, status, getattr(line, "source_ip", None)))
    assert got == [(what, status, source) for what, _, status, source in cases]
