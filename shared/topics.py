"""The topic registry: every topic hookline uses, with its settings.

Names carry the configured prefix. :func:`ensure_topics` creates what is
missing and reports settings that differ (it never alters a live topic).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000
INBOUND_MAX_BYTES = 40 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopicSpec:
    logical: str
    name: str
    partitions: int
    cleanup_policy: str
    retention_ms: int | None
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def configs(self) -> dict[str, str]:
        conf = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            conf["retention.ms"] = str(self.retention_ms)
        conf.update(self.extra)
        return conf


def retry_tier_name(attempt: int) -> str:
    """The logical name of the retry tier that holds deliveries waiting for ``attempt``."""
    return f"delivery-retry.{attempt}"


@dataclass(frozen=True, slots=True)
class Topics:
    """The names of every topic, prefix applied; iterate for the specs."""

    prefix: str
    inbound: str
    workflow_commands: str
    workflow_events: str
    config: str
    delivery_attempts: str
    dlq: str
    dispatcher_runs: str
    operations: str
    audit: str
    delivery_holds: str
    retry_tiers: tuple[str, ...]
    specs: tuple[TopicSpec, ...] = field(repr=False)

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.specs)

    def spec(self, logical: str) -> TopicSpec:
        for s in self.specs:
            if s.logical == logical:
                return s
        raise KeyError(logical)

    def retry_tier(self, attempt: int) -> str:
        """The topic for a delivery waiting for ``attempt`` (2 … len(schedule)+1)."""
        index = min(max(attempt - 2, 0), len(self.retry_tiers) - 1)
        return self.retry_tiers[index]


def topic_registry(
    prefix: str = "hookline.",
    *,
    partitions: int = 6,
    retry_tiers: int = 9,
    audit_retention_days: float = 365,
) -> Topics:
    """All topics for ``prefix``; ``retry_tiers`` is the number of retries in the schedule;
    ``audit_retention_days`` is ``HOOKLINE_AUDIT_RETENTION_DAYS``."""

    def spec(
        logical: str,
        cleanup: str,
        retention_ms: int | None,
        parts: int = partitions,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> TopicSpec:
        return TopicSpec(logical, prefix + logical, parts, cleanup, retention_ms, extra)

    compact_fast = (("min.cleanable.dirty.ratio", "0.1"), ("segment.ms", str(3600 * 1000)))
    tiers = [
        spec(retry_tier_name(a), "delete", 3 * DAY_MS) for a in range(2, max(retry_tiers, 1) + 2)
    ]
    specs = (
        # Inbound events carry bodies up to the 25 MiB ingress cap (base64 when binary):
        # the broker's 1 MiB default would refuse them.
        spec(
            "inbound", "delete", 7 * DAY_MS, extra=(("max.message.bytes", str(INBOUND_MAX_BYTES)),)
        ),
        # A run request embeds its inbound event, so it is as large.
        spec(
            "workflow-commands",
            "delete",
            7 * DAY_MS,
            extra=(("max.message.bytes", str(INBOUND_MAX_BYTES)),),
        ),
        spec("workflow-events", "delete", 7 * DAY_MS),
        spec("config", "compact", None, parts=1, extra=compact_fast),
        spec("delivery-attempts", "delete", 14 * DAY_MS),
        spec("dlq", "delete", 30 * DAY_MS),
        # The dispatcher's record of runs it started: a compacted changelog keyed by run id.
        spec("dispatcher-runs", "compact", None, extra=compact_fast),
        # Replays, recoveries and dead-letter retries: the latest state per operation,
        # kept 30 days (the dlq's retention) so a request id stays idempotent that long.
        spec("operations", "compact,delete", 30 * DAY_MS, parts=1, extra=compact_fast),
        # Who changed what: kept as long as compliance asks, whatever the other topics
        # keep; one partition, so the trail reads in the order it was written.
        spec("audit", "delete", round(audit_retention_days * DAY_MS), parts=1),
        # Deliveries the delivery service keeps waiting (paused, behind their run's previous
        # event, held back by a rate limit): the live ones per key, one partition per
        # workflow-events partition, written by whoever reads that partition.
        spec("delivery-holds", "compact", None, extra=compact_fast),
        *tiers,
    )
    return Topics(
        prefix=prefix,
        inbound=prefix + "inbound",
        workflow_commands=prefix + "workflow-commands",
        workflow_events=prefix + "workflow-events",
        config=prefix + "config",
        delivery_attempts=prefix + "delivery-attempts",
        dlq=prefix + "dlq",
        dispatcher_runs=prefix + "dispatcher-runs",
        operations=prefix + "operations",
        audit=prefix + "audit",
        delivery_holds=prefix + "delivery-holds",
        retry_tiers=tuple(t.name for t in tiers),
        specs=specs,
    )
