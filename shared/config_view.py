"""The config view: every service's in-memory copy of the compacted ``config`` topic.

Lifecycle: ``async with ConfigView(...)`` reads the topic from the beginning;
:meth:`ConfigView.wait_ready` returns once it has applied everything up to the
end offsets seen at start; it then keeps following. Lookups are answered from
memory. A tombstone deletes. A record that does not parse is logged and skipped
(and dead-lettered when a :class:`~shared.deadletter.DeadLetters` is given):
configuration must never stop a service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from shared.cloudevents import decode
from shared.crypto import SecretBox
from shared.deadletter import DeadLetters
from shared.entities import ENTITY_TYPES, Entity, Subscription, Webhook, Workflow
from shared.errors import PoisonMessage, SecretError
from shared.follower import TopicFollower
from shared.subscription_index import SubscriptionIndex

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Entity)
Listener = Callable[[str, Entity | None], None]


class ConfigView(TopicFollower):
    """Follows ``config``; answers lookups for webhooks, subscriptions and workflows."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        secret_box: SecretBox | None = None,
        dead_letters: DeadLetters | None = None,
        poll_timeout: float = 0.2,
    ) -> None:
        super().__init__(
            bootstrap_servers, topic, client_id="hookline-config", poll_timeout=poll_timeout
        )
        self._box = secret_box
        self._dead_letters = dead_letters
        # Per kind, so listing one kind does not walk the others (webhooks and
        # subscriptions may each number in the hundreds of thousands).
        self._by_kind: dict[str, dict[str, Entity]] = {kind: {} for kind in ENTITY_TYPES}
        self._subscriptions = SubscriptionIndex()
        self._listeners: list[Listener] = []
        # The one cache of decrypted secrets: per entity key, the entity it was made
        # from, its active secrets (newest first), when the first of them expires, and the
        # moment they were worked out for (an earlier moment may have more of them active).
        self._plain_cache: dict[str, tuple[Entity, list[str], float, float]] = {}
        self._header_cache: dict[str, tuple[Subscription, dict[str, str]]] = {}

    def add_listener(self, listener: Listener) -> None:
        """``listener(key, entity_or_None)`` is called after each applied change."""
        self._listeners.append(listener)

    # -- lookups --------------------------------------------------------------------------

    def get(self, kind: type[E], entity_id: str) -> E | None:
        entity = self._by_kind[kind.kind].get(f"{kind.kind}/{entity_id}")
        return entity if isinstance(entity, kind) else None

    def all(self, kind: type[E]) -> list[E]:
        return [e for e in self._by_kind.get(kind.kind, {}).values() if isinstance(e, kind)]

    def webhook(self, webhook_id: str) -> Webhook | None:
        return self.get(Webhook, webhook_id)

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self.get(Subscription, subscription_id)

    def workflow(self, workflow_id: str) -> Workflow | None:
        return self.get(Workflow, workflow_id)

    def subscriptions_for(self, event_type: str, workflow_id: str | None) -> list[Subscription]:
        """Enabled subscriptions that want this event type (and workflow, where they name
        some), from an index: the cost follows the answer, not the number of subscriptions."""
        return self._subscriptions.matching(event_type, workflow_id)

    def secrets(self, entity: Webhook | Subscription, now: datetime | None = None) -> list[str]:
        """The entity's secrets still valid at ``now``, decrypted; newest first.

        Kept until the entity changes or the first of them expires, so a delivery or a
        request costs one lookup and no decryption.
        """
        if self._box is None:
            raise SecretError("this config view was built without a secret key")
        moment = now or datetime.now(UTC)
        stamp = moment.timestamp()
        hit = self._plain_cache.get(entity.key)
        if hit is not None and hit[0] is entity and hit[2] > stamp >= hit[3]:
            return hit[1]
        active = sorted(
            (s for s in entity.secrets if s.active(moment)),
            key=lambda s: s.created_at,
            reverse=True,
        )
        out = [self._box.decrypt(s.ciphertext, entity_key=entity.key) for s in active]
        expiries = [s.expires_at.timestamp() for s in active if s.expires_at is not None]
        self._plain_cache[entity.key] = (entity, out, min(expiries, default=float("inf")), stamp)
        return out

    # -- applying -----------------------------------------------------------------------

    async def apply(self, record: Any) -> None:
        key_bytes: bytes | None = getattr(record, "key", None)
        value: bytes | None = getattr(record, "value", None)
        headers = getattr(record, "headers", None)
        key = key_bytes.decode(errors="replace") if key_bytes else ""
        kind_name, _, entity_id = key.partition("/")
        model = ENTITY_TYPES.get(kind_name)  # type: ignore[call-overload]
        try:
            if model is None or not entity_id:
                raise PoisonMessage(f"config key {key!r} is not <kind>/<id>")
            if value is None:
                previous = self._by_kind[kind_name].pop(key, None)
                self._plain_cache.pop(key, None)
                self._header_cache.pop(key, None)
                if kind_name == Subscription.kind:
                    self._subscriptions.remove(key)
                if previous is not None:
                    self._notify(key, None)
                return
            entity = decode(headers, value, model).data
            if entity.id != entity_id:
                raise PoisonMessage(f"config key {key!r} does not match entity id {entity.id!r}")
        except PoisonMessage as exc:
            log.warning("skipping invalid config record", extra={"key": key, "reason": exc.reason})
            if self._dead_letters is not None:
                await self._dead_letters.send(
                    key=key_bytes,
                    value=value,
                    headers=headers,
                    error=exc,
                    source_topic=self._topic,
                    partition=getattr(record, "partition", -1),
                    offset=getattr(record, "offset", -1),
                )
            return
        self._by_kind[kind_name][key] = entity
        if isinstance(entity, Subscription):
            self._subscriptions.put(key, entity)
        self._plain_cache.pop(key, None)
        self._header_cache.pop(key, None)
        self._notify(key, entity)

    def _notify(self, key: str, entity: Entity | None) -> None:
        for listener in self._listeners:
            try:
                listener(key, entity)
            except Exception:
                log.exception("config listener failed", extra={"key": key})

    def headers(self, subscription: Subscription) -> dict[str, str]:
        """The subscription's custom headers, values decrypted (plaintext ones of older
        records as they are); kept per subscription until it changes."""
        hit = self._header_cache.get(subscription.key)
        if hit is not None and hit[0] is subscription:
            return hit[1]
        if subscription.encrypted_headers and self._box is None:
            raise SecretError("this config view was built without a secret key")
        plain = dict(subscription.headers)
        for name, sealed in subscription.encrypted_headers.items():
            assert self._box is not None
            plain[name] = self._box.decrypt(sealed, entity_key=subscription.header_key(name))
        self._header_cache[subscription.key] = (subscription, plain)
        return plain
