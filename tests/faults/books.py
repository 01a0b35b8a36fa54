""":class:`Books` reads what the services wrote (committed records only) and accounts
for one phase: every 202 on ``inbound``, one run per bound delivery, every lifecycle
event of those runs delivered with one webhook-id, and every consumer group's offsets
at the end of what it reads.
"""

from __future__ import annotations

import asyncio
import collections
import time

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import kafka_client_options
from shared.topics import Topics
from tests.faults.load import Post
from tests.faults.subscriber import Subscriber, event_key
from tests.faults.table import Figures
from tests.faults.tail import TopicTail

TERMINAL = {"workflow.completed", "workflow.failed"}


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
            if "run_id" not in data:
                # An operational event (a subscription disabled or recovered, a delivery
                # exhausted): about a subscription, not a run; delivered like the others.
                continue
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


def takeover(books: Books, posts: list[Post], killed: float, ready: float) -> float:
    """Seconds from the replacement being ready to the last run it held back starting
    (0 when every run of the window had started by then)."""
    latest = ready
    for p in posts:
        if p.status == 202 and p.bound and killed - 1 <= p.sent <= ready:
            for _, at in books.run_ids.get(p.delivery, []):
                latest = max(latest, at)
    return latest - ready
