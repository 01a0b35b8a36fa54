""":class:`Load` posts signed GitHub webhooks at a steady rate, about a third of them
to a webhook bound to a workflow, 5 % of them provider redeliveries (a delivery id
sent before, sent again), and notes every answer with its time.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import random
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.faults.entities import BOUND, GITHUB_SECRET, UNBOUND


@dataclass
class Post:
    delivery: str
    webhook: str
    bound: bool
    sent: float
    status: int = 0  # 0: no answer (connection refused, reset or timed out)
    answered: float = 0.0


@dataclass
class Load:
    """Posts at ``rate`` a second until stopped; ``posts`` in the order they were sent."""

    url: str
    rate: float
    bound_share: float = 1 / 3
    redelivery_share: float = 0.05
    max_in_flight: int = 400
    posts: list[Post] = field(default_factory=list)
    _body: bytes = orjson.dumps({"ref": "refs/heads/main", "after": "abc", "commits": []})

    async def run(self, stop: asyncio.Event) -> None:
        signature = (
            "sha256=" + hmac.new(GITHUB_SECRET.encode(), self._body, hashlib.sha256).hexdigest()
        )
        headers = {"content-type": "application/json", "x-github-event": "push"}
        slots = asyncio.Semaphore(self.max_in_flight)
        rng = random.Random(len(self.posts))
        recent: collections.deque[tuple[str, str, bool]] = collections.deque(maxlen=2000)
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            while not stop.is_set():
                if recent and rng.random() < self.redelivery_share:
                    delivery, hook, bound = rng.choice(recent)
                else:
                    delivery, bound = str(uuid.uuid4()), rng.random() < self.bound_share
                    hook = rng.choice(BOUND if bound else UNBOUND)
                    recent.append((delivery, hook, bound))
                post = Post(delivery, hook, bound, time.time())
                self.posts.append(post)
                await slots.acquire()
                task = asyncio.create_task(
                    self._send(session, post, {**headers, "x-hub-signature-256": signature}, slots)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:
                    next_at = time.monotonic()  # fell behind: the rate is what we can do
            if tasks:
                await asyncio.wait(tasks)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        post: Post,
        headers: dict[str, str],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            async with session.post(
                f"{self.url}/webhooks/{post.webhook}/github",
                data=self._body,
                headers={**headers, "x-github-delivery": post.delivery},
            ) as response:
                await response.read()
                post.status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            post.status = 0
        finally:
            post.answered = time.time()
            slots.release()
