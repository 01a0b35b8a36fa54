""":class:`Subscriber` is the subscribers' endpoint: it fails the first attempt of one
delivery in ten and keeps what it received.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook as Verifier

from tests.faults.entities import RECEIVER_SECRET


@dataclass
class Seen:
    webhook_ids: set[str] = field(default_factory=set)
    count: int = 0


class Subscriber:
    """The subscribers' endpoint: one first attempt in ten is answered 503."""

    def __init__(self, fail_share: float = 0.1, verify_every: int = 20) -> None:
        self._fail_share = fail_share
        self._verify_every = verify_every
        self._verifier = Verifier(RECEIVER_SECRET)
        self._failed: set[str] = set()
        self.events: dict[tuple[str, str, str], Seen] = collections.defaultdict(Seen)
        self.requests = 0
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        webhook_id = request.headers.get("webhook-id", "")
        if self.requests % self._verify_every == 0:  # a sample: verifying all costs a core
            try:
                self._verifier.verify(body, dict(request.headers))
            except Exception:
                self.bad_signatures += 1
                return web.Response(status=401)
        digest = hashlib.blake2b(webhook_id.encode(), digest_size=2).digest()
        if (
            int.from_bytes(digest) % 1000 < self._fail_share * 1000
            and webhook_id not in self._failed
        ):
            self._failed.add(webhook_id)
            return web.Response(status=503)
        event = orjson.loads(body)
        seen = self.events[event_key(event["type"], event["data"])]
        seen.webhook_ids.add(webhook_id)
        seen.count += 1
        return web.Response(status=204)

    async def __aenter__(self) -> Subscriber:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def event_key(kind: str, data: dict[str, Any]) -> tuple[str, str, str]:
    """One lifecycle event: its run, its type, and its node or status."""
    return (data["run_id"], kind, str(data.get("node_id") or data.get("to")))
