"""What each node kind of the local engine does: ``log``, ``http``, ``sleep``, ``fail``.

A node returns a small output summary (it travels in ``node.completed``) or
raises :class:`NodeFailed` with an error code and message (it travels in
``error.occurred`` and ``workflow.failed``). Nothing here may raise anything
else: a node's bad configuration is the workflow's failure, not the engine's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.entities import Node
from shared.errors import NodeFailed
from shared.messages import RunRequested

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})


@dataclass(frozen=True, slots=True)
class NodePolicy:
    """Bounds on what nodes may do."""

    max_sleep: float = 30.0
    http_timeout: float = 10.0
    allow_insecure_urls: bool = False
    allow_private_destinations: bool = False
    max_excerpt: int = 512


class NodeRunner:
    """Runs one node of a run; shares one HTTP client across runs."""

    def __init__(self, client: httpx.AsyncClient, policy: NodePolicy) -> None:
        self._client = client
        self._policy = policy

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
        await self._check_destination(url)
        body = node.config.get("body")
        if body is None and method in {"POST", "PUT", "PATCH"}:
            body = {
                "run_id": command.run_id,
                "workflow_id": command.workflow_id,
                "event_type": command.event_type,
                "payload": command.input.payload,
            }
        try:
            response = await self._client.request(
                method,
                url,
                json=body,
                headers={str(k): str(v) for k, v in dict(node.config.get("headers") or {}).items()},
                timeout=self._policy.http_timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise NodeFailed("http_error", f"{method} {url}: {type(exc).__name__}") from exc
        summary = {
            "status_code": response.status_code,
            "body": response.text[: self._policy.max_excerpt],
        }
        if response.status_code >= 400:
            raise NodeFailed("http_status", f"{method} {url} answered {response.status_code}")
        return summary

    async def _check_destination(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NodeFailed("invalid_node_config", f"url {url!r} is not http(s)")
        if parts.scheme != "https" and not self._policy.allow_insecure_urls:
            raise NodeFailed("forbidden_destination", "only https urls are allowed")
        if self._policy.allow_private_destinations:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
        except OSError as exc:
            raise NodeFailed("http_error", f"cannot resolve {parts.hostname}") from exc
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise NodeFailed(
                    "forbidden_destination", f"{parts.hostname} resolves to a private address"
                )
