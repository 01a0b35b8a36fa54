"""Which subscriptions want an event, found without walking every subscription.

A subscription is filed under each (event pattern, workflow) pair it names: its
``events`` patterns times its ``workflow_ids`` (or :data:`ANY_WORKFLOW` when it names
none). An event of type ``t`` for workflow ``w`` looks in the buckets of the patterns
that match ``t`` — ``t`` itself, ``*``, and the glob patterns that match it — for
``w`` and for :data:`ANY_WORKFLOW`. Glob patterns (``workflow.*``, ``step.?ailed``)
are few however many subscriptions use them; which of them match an event type is
worked out once per type and kept until the set of glob patterns changes.

So a lookup costs the number of distinct glob patterns at worst (once per event type)
plus the number of subscriptions it returns, whether there are ten subscriptions or a
hundred thousand. Disabled subscriptions are not filed. The answer keeps the order in
which the subscriptions were first seen, as the scan it replaces did.
"""

from __future__ import annotations

from shared.entities import Subscription, event_pattern_matches

ANY_WORKFLOW = "\x00any"
_GLOB_CHARS = frozenset("*?[")


def _is_glob(pattern: str) -> bool:
    return pattern != "*" and not _GLOB_CHARS.isdisjoint(pattern)


class SubscriptionIndex:
    """Subscriptions by (event pattern, workflow); updated entity by entity."""

    def __init__(self) -> None:
        # (pattern, workflow or ANY_WORKFLOW) → subscription key → subscription
        self._buckets: dict[tuple[str, str], dict[str, Subscription]] = {}
        # Where each subscription is filed, to unfile it on change or delete.
        self._filed: dict[str, tuple[tuple[str, str], ...]] = {}
        # First-seen order of every subscription key (kept across updates).
        self._order: dict[str, int] = {}
        self._next = 0
        # Glob pattern → how many buckets use it; and per event type, the globs matching it.
        self._globs: dict[str, int] = {}
        self._globs_for: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._filed)

    def put(self, key: str, subscription: Subscription) -> None:
        """File (or refile) ``subscription`` under ``key``."""
        self._unfile(key)
        if key not in self._order:
            self._order[key] = self._next
            self._next += 1
        if not subscription.enabled:
            return
        workflows = subscription.workflow_ids or [ANY_WORKFLOW]
        places = tuple(
            {(pattern, workflow): None for pattern in subscription.events for workflow in workflows}
        )
        for place in places:
            bucket = self._buckets.get(place)
            if bucket is None:
                bucket = self._buckets[place] = {}
                pattern = place[0]
                if _is_glob(pattern):
                    if pattern not in self._globs:
                        self._globs_for.clear()
                    self._globs[pattern] = self._globs.get(pattern, 0) + 1
            bucket[key] = subscription
        self._filed[key] = places

    def remove(self, key: str) -> None:
        self._unfile(key)
        self._order.pop(key, None)

    def _unfile(self, key: str) -> None:
        for place in self._filed.pop(key, ()):
            bucket = self._buckets[place]
            del bucket[key]
            if bucket:
                continue
            del self._buckets[place]
            pattern = place[0]
            if _is_glob(pattern):
                left = self._globs[pattern] - 1
                if left:
                    self._globs[pattern] = left
                else:
                    del self._globs[pattern]
                    self._globs_for.clear()

    def matching(self, event_type: str, workflow_id: str | None) -> list[Subscription]:
        """Enabled subscriptions that want ``event_type`` for ``workflow_id``, in order."""
        globs = self._globs_for.get(event_type)
        if globs is None:
            globs = tuple(p for p in self._globs if event_pattern_matches(p, event_type))
            self._globs_for[event_type] = globs
        found: dict[str, Subscription] = {}
        workflows = (ANY_WORKFLOW,) if workflow_id is None else (workflow_id, ANY_WORKFLOW)
        for pattern in (event_type, "*", *globs):
            for workflow in workflows:
                bucket = self._buckets.get((pattern, workflow))
                if bucket:
                    found.update(bucket)
        if len(found) > 1:
            order = self._order
            return [found[k] for k in sorted(found, key=order.__getitem__)]
        return list(found.values())
