"""The fault harness's load, subscriber and accounting (the faults are in :mod:`.faults`).

:class:`Load` posts signed GitHub webhooks at a steady rate, about a third of them
to a webhook bound to a workflow, 5 % of them provider redeliveries (a delivery id
sent before, sent again), and notes every answer with its time. :class:`Subscriber`
is the subscribers' endpoint: it fails the first attempt of one delivery in ten and
keeps what it received. :class:`Books` reads what the services wrote (committed
records only) and accounts for one phase: every 202 on ``inbound``, one run per bound
delivery, every lifecycle event of those runs delivered with one webhook-id, and
every consumer group's offsets at the end of what it reads.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from standardwebhooks.webhooks import Webhook as Verifier

from shared.entities import Entity
from shared.kafka import kafka_client_options, topic_partitions
from shared.topics import Topics
from testkit.config import subscription, webhook, workflow

GITHUB_SECRET = "fault-github-secret"
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WORKFLOW = "wf-fault"
# Several webhooks of each kind: the ingress keys records by webhook id, so these spread
# the load over the partitions as many webhooks do in production.
BOUND = [f"gh-bound-{i}" for i in range(6)]
UNBOUND = [f"gh-free-{i}" for i in range(6)]
TERMINAL = {"workflow.completed", "workflow.failed"}


def entities(subscriber_url: str) -> list[Entity]:
    """The workflow, the webhooks (bound and not) and the subscription the load needs."""
    return [
        workflow(WORKFLOW, nodes=[{"id": "step", "kind": "log"}]),
        *[
            webhook(
                name,
                provider="github",
                secrets=[GITHUB_SECRET],
                bindings=[{"workflow_id": WORKFLOW, "events": ["push"]}],
            )
            for name in BOUND
        ],
        *[webhook(name, provider="github", secrets=[GITHUB_SECRET]) for name in UNBOUND],
        subscription("sub-fault", url=subscriber_url, secrets=[RECEIVER_SECRET]),
    ]


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


class TopicTail:
    """Every committed record of one topic, read on from where the last call stopped."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.last: dict[int, int] = {}  # partition: offset of its last data record
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    async def read(self, timeout: float = 30.0) -> list[Any]:
        """The records written since the last call, up to the end offsets seen now."""
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                **kafka_client_options(),
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                max_partition_fetch_bytes=8 * 1024 * 1024,
            )
            await self._consumer.start()
            parts = await topic_partitions(self.bootstrap, self.topic)
            self._tps = [TopicPartition(self.topic, p) for p in parts]
            self._consumer.assign(self._tps)
            await self._consumer.seek_to_beginning(*self._tps)
        consumer = self._consumer
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        ends = await consumer.end_offsets(self._tps)
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in self._tps}
            if all(positions[tp] >= ends[tp] for tp in self._tps):
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, records in batch.items():
                out.extend(records)
                if records:
                    self.last[tp.partition] = records[-1].offset
        return out

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


@dataclass
class Figures:
    """One phase's row of the fault table."""

    fault: str
    seconds: float = 0.0
    offered: int = 0
    accepted: int = 0
    refused_503: int = 0
    no_answer: int = 0
    longest_no_202: float = 0.0
    lost: int = 0
    duplicate_runs: int = 0
    missing_runs: int = 0
    deliveries_missing: int = 0
    split_ids: int = 0
    uncommitted: int = 0
    takeover: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.duplicate_runs
            or self.missing_runs
            or self.deliveries_missing
            or self.split_ids
            or self.uncommitted
        )


class Books:
    """What the services wrote, read on as the phases go; one phase accounted at a time."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.inbound = TopicTail(bootstrap, topics.inbound)
        self.commands = TopicTail(bootstrap, topics.workflow_commands)
        self.events_tail = TopicTail(bootstrap, topics.workflow_events)
        # The retry tiers: read only for their ends, each by its own delivery group.
        self.tiers = {
            f"{topics.prefix}delivery.{tier.rsplit('.', 1)[-1]}": TopicTail(bootstrap, tier)
            for tier in topics.retry_tiers
        }
        self.on_inbound: set[str] = set()
        self.runs: collections.Counter[str] = collections.Counter()  # provider event id
        self.run_ids: dict[str, list[tuple[str, float]]] = collections.defaultdict(list)
        self.run_events: dict[str, set[tuple[str, str, str]]] = collections.defaultdict(set)
        self.finished: set[str] = set()

    async def read(self) -> None:
        for r in await self.inbound.read():
            self.on_inbound.add(orjson.loads(r.value)["provider_event_id"])
        for r in await self.commands.read():
            if dict(r.headers).get("ce_type") != b"hookline.workflow.run_requested":
                continue
            cmd = orjson.loads(r.value)
            self.runs[cmd["provider_event_id"]] += 1
            self.run_ids[cmd["provider_event_id"]].append((cmd["run_id"], r.timestamp / 1000))
        for r in await self.events_tail.read():
            kind = dict(r.headers).get("ce_type", b"").decode()
            data = orjson.loads(r.value)
            self.run_events[data["run_id"]].add(event_key(kind, data))
            if kind in TERMINAL:
                self.finished.add(data["run_id"])
        for tail in self.tiers.values():
            await tail.read()

    async def account(
        self, figures: Figures, posts: list[Post], subscriber: Subscriber, timeout: float
    ) -> None:
        """Wait (up to ``timeout``) until the phase's posts are settled, then count."""
        accepted = {p.delivery for p in posts if p.status == 202}
        bound = {p.delivery for p in posts if p.status == 202 and p.bound}
        deadline = time.monotonic() + timeout
        while True:
            await self.read()
            runs = [rid for d in bound for rid, _ in self.run_ids.get(d, [])]
            missing_events = {
                e
                for rid in runs
                for e in self.run_events.get(rid, ())
                if e not in subscriber.events
            }
            settled = (
                accepted <= self.on_inbound
                and all(self.runs[d] >= 1 for d in bound)
                and all(rid in self.finished for rid in runs)
                and not missing_events
            )
            uncommitted = await self.uncommitted()
            if (settled and not uncommitted) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        figures.lost = len(accepted - self.on_inbound)
        figures.missing_runs = sum(1 for d in bound if self.runs[d] == 0)
        figures.duplicate_runs = sum(self.runs[d] - 1 for d in bound if self.runs[d] > 1)
        unfinished = [rid for rid in runs if rid not in self.finished]
        figures.deliveries_missing = len(missing_events) + len(unfinished)
        figures.split_ids = sum(
            1
            for rid in runs
            for e in self.run_events.get(rid, ())
            if len(subscriber.events[e].webhook_ids) > 1
        )
        figures.uncommitted = sum(uncommitted.values())
        if uncommitted:
            figures.notes.append(f"uncommitted: {dict(uncommitted)}")

    async def uncommitted(self) -> dict[str, int]:
        """Records each group has not committed past, by group (none when all are)."""
        t = self.topics
        groups = {
            f"{t.prefix}dispatcher": self.inbound,
            f"{t.prefix}engine": self.commands,
            f"{t.prefix}delivery": self.events_tail,
            **self.tiers,
        }
        behind: dict[str, int] = {}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **kafka_client_options())
        await admin.start()
        try:
            for group, tail in groups.items():
                offsets = await admin.list_consumer_group_offsets(group)
                committed = {tp.partition: m.offset for tp, m in offsets.items()}
                gap = sum(max(0, last + 1 - committed.get(p, 0)) for p, last in tail.last.items())
                if gap:
                    behind[group] = gap
        finally:
            await admin.close()
        return behind

    async def close(self) -> None:
        for tail in (self.inbound, self.commands, self.events_tail, *self.tiers.values()):
            await tail.close()


def load_figures(figures: Figures, posts: list[Post]) -> None:
    """Offered, accepted, refused and the longest stretch without a 202, from the posts."""
    figures.offered = len(posts)
    figures.accepted = sum(1 for p in posts if p.status == 202)
    figures.refused_503 = sum(1 for p in posts if p.status == 503)
    figures.no_answer = sum(1 for p in posts if p.status == 0)
    if posts:
        times = sorted(p.answered for p in posts if p.status == 202)
        edges = [posts[0].sent, *times, max(p.answered for p in posts)]
        figures.longest_no_202 = max(b - a for a, b in itertools.pairwise(edges))


def takeover(books: Books, posts: list[Post], killed: float, ready: float) -> float:
    """Seconds from the replacement being ready to the last run it held back starting
    (0 when every run of the window had started by then)."""
    latest = ready
    for p in posts:
        if p.status == 202 and p.bound and killed - 1 <= p.sent <= ready:
            for _, at in books.run_ids.get(p.delivery, []):
                latest = max(latest, at)
    return latest - ready


def print_table(rows: list[Figures], rate: float) -> str:
    head = (
        f"{'fault':<18}{'s':>5}{'/s':>5}{'offered':>8}{'202':>8}{'503':>6}{'no ans':>7}{'max no-202 s':>13}"
        f"{'lost':>6}{'dup runs':>9}{'missing':>8}{'takeover s':>11}"
    )
    lines = [
        f"fault table: {rate:g} posts/s asked; /s is what was offered",
        head,
        "-" * len(head),
    ]
    for f in rows:
        take = "" if f.takeover is None else f"{f.takeover:.1f}"
        lines.append(
            f"{f.fault:<18}{f.seconds:>5.0f}{f.offered / max(f.seconds, 1e-9):>5.0f}"
            f"{f.offered:>8}{f.accepted:>8}{f.refused_503:>6}{f.no_answer:>7}"
            f"{f.longest_no_202:>13.1f}{f.lost:>6}{f.duplicate_runs:>9}"
            f"{f.deliveries_missing + f.missing_runs:>8}{take:>11}"
        )
        lines += [f"    {note}" for note in f.notes]
    text = "\n".join(lines)
    print("\n" + text)
    return text
