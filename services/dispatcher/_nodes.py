"""What each node kind of the local engine does: ``log``, ``http``, ``sleep``, ``fail``.

A node returns a small output summary (it travels in ``node.completed``) or
raises :class:`NodeFailed` with an error code and message (it travels in
``error.occurred`` and ``workflow.failed``). Nothing here may raise anything
else: a node's bad configuration is the workflow's failure, not the engine's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from shared import tracing
from shared.destinations import DestinationGuard, DestinationPolicy, Resolver
from shared.entities import Node
from shared.errors import DestinationRefused, DestinationUnresolved, NodeFailed
from shared.guarded_http import GuardedHTTPTransport
from shared.messages import RunRequested
from shared.tracing import propagation

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
# httpx's own defaults, as the engine's client had them.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


@dataclass(frozen=True, slots=True)
class NodePolicy:
    """Bounds on what nodes may do."""

    max_sleep: float = 30.0
    http_timeout: float = 10.0
    allow_insecure_urls: bool = False
    allow_private_destinations: bool = False
    max_excerpt: int = 512

    @property
    def destinations(self) -> DestinationPolicy:
        return DestinationPolicy(
            allow_private=self.allow_private_destinations, allow_insecure=self.allow_insecure_urls
        )


def node_http_client(
    policy: NodePolicy,
    *,
    resolver: Resolver | None = None,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """The engine's client for ``http`` nodes: every connection goes to an address the
    destination policy allowed, judged when it is opened (the delivery service's rule)."""
    destinations = policy.destinations
    guard = DestinationGuard(
        resolver,
        allow_private=destinations.allow_private,
        allow_insecure=destinations.allow_insecure,
    )
    return httpx.AsyncClient(
        transport=GuardedHTTPTransport(guard, _LIMITS, network=network),
        timeout=policy.http_timeout,
        follow_redirects=False,
        trust_env=False,
    )


class NodeRunner:
    """Runs one node of a run; shares one HTTP client across runs."""

    def __init__(self, client: httpx.AsyncClient, policy: NodePolicy) -> None:
        """``client`` is :func:`node_http_client`'s: it judges the addresses it connects to."""
        self._client = client
        self._policy = policy
        self._destinations = policy.destinations

    async def run(self, node: Node, command: RunRequested) -> Any:
        if node.kind == "log":
            return self._log(node, command)
        if node.kind == "sleep":
            return await self._sleep(node)
        if node.kind == "http":
            return await self._http(node, command)
        message = node.config.get("message")
        raise NodeFailed(
            "node_failed", str(message) if message is not None else f"node {node.id} failed"
        )

    def _log(self, node: Node, command: RunRequested) -> Any:
        message = str(node.config.get("message", f"node {node.id}"))[:2000]
        log.info(
            "workflow log node",
            extra={
                "run_id": command.run_id,
                "workflow_id": command.workflow_id,
                "node_id": node.id,
                "node_message": message,
            },
        )
        return {"logged": message}

    async def _sleep(self, node: Node) -> Any:
        raw = node.config.get("seconds", 0)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
            raise NodeFailed(
                "invalid_node_config", f"sleep node {node.id}: seconds must be a number >= 0"
            )
        seconds = min(float(raw), self._policy.max_sleep)
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    async def _http(self, node: Node, command: RunRequested) -> Any:
        url = node.config.get("url")
        method = str(node.config.get("method", "POST")).upper()
        if not isinstance(url, str) or not url:
            raise NodeFailed("invalid_node_config", f"http node {node.id}: config.url is required")
        if method not in HTTP_METHODS:
            raise NodeFailed(
                "invalid_node_config", f"http node {node.id}: method {method} not allowed"
            )
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise NodeFailed("invalid_node_config", f"url {url!r} is not http(s)")
        try:
            self._destinations.check_url(url)
        except DestinationRefused as exc:
            raise NodeFailed("forbidden_destination", exc.reason) from None
        body = node.config.get("body")
        if body is None and method in {"POST", "PUT", "PATCH"}:
            body = {
                "run_id": command.run_id,
                "workflow_id": command.workflow_id,
                "event_type": command.event_type,
                "payload": command.input.payload,
            }
        headers = {str(k): str(v) for k, v in dict(node.config.get("headers") or {}).items()}
        if tracing.enabled:
            # The node's span: the service called may join the run's trace.
            headers.update(propagation.current_http_headers())
        try:
            response = await self._client.request(
                method,
                url,
                json=body,
                headers=headers,
                timeout=self._policy.http_timeout,
                follow_redirects=False,
            )
        except DestinationUnresolved as exc:
            raise NodeFailed("http_error", exc.reason) from None
        except DestinationRefused as exc:
            raise NodeFailed("forbidden_destination", exc.reason) from None
        except httpx.HTTPError as exc:
            raise NodeFailed("http_error", f"{method} {url}: {type(exc).__name__}") from exc
        summary = {
            "status_code": response.status_code,
            "body": response.text[: self._policy.max_excerpt],
        }
        if response.status_code >= 400:
            raise NodeFailed("http_status", f"{method} {url} answered {response.status_code}")
        return summary
