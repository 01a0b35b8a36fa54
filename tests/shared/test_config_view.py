"""The config view: built from the compacted topic, tombstones delete, ready only when caught up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.cloudevents import encode
from shared.config_view import ConfigView
from shared.crypto import SecretBox
from shared.entities import Binding, Entity, StoredSecret, Subscription, Webhook, Workflow
from shared.kafka import create_producer
from shared.topics import Topics
from testkit import TEST_SECRET_KEY

NOW = datetime(2026, 11, 27, tzinfo=UTC)
BOX = SecretBox(TEST_SECRET_KEY)


def _webhook(i: int, version: int = 1) -> Webhook:
    key = f"webhook/wh-{i}"
    return Webhook(
        id=f"wh-{i}",
        version=version,
        created_at=NOW,
        updated_at=NOW,
        provider="github",
        secrets=[
            StoredSecret(
                ciphertext=BOX.encrypt(f"s3cret-{i}", entity_key=key), hint="…", created_at=NOW
            )
        ],
        bindings=[Binding(workflow_id="wf", events=["push"])],
    )


async def _write(bootstrap: str, topic: str, entities: list[Entity], deletes: list[str]) -> None:
    async with create_producer(bootstrap) as producer:
        for entity in entities:
            rec = encode(entity, key=entity.key, source="/tests")
            await producer.send(topic, rec.value, key=rec.key, headers=rec.headers)
        for key in deletes:
            await producer.send(topic, None, key=key.encode())
        await producer.flush()


def _state(view: ConfigView) -> dict[str, object]:
    return {
        "webhooks": sorted((w.id, w.version) for w in view.all(Webhook)),
        "subscriptions": sorted(s.id for s in view.all(Subscription)),
        "workflows": sorted(w.id for w in view.all(Workflow)),
    }


@pytest.mark.kafka
async def test_rebuilt_view_has_the_same_state_and_tombstones_delete(bootstrap, topics: Topics):
    entities: list[Entity] = [_webhook(i) for i in range(30)]
    entities += [_webhook(3, version=2)]
    entities += [
        Subscription(
            id="sub-a",
            created_at=NOW,
            updated_at=NOW,
            url="https://a.example/h",
            events=["workflow.completed"],
            workflow_ids=["wf"],
        ),
        Subscription(id="sub-b", created_at=NOW, updated_at=NOW, url="https://b.example/h"),
        Workflow(id="wf", created_at=NOW, updated_at=NOW),
    ]
    await _write(bootstrap, topics.config, entities, ["webhook/wh-7", "subscription/sub-b"])

    async with ConfigView(bootstrap, topics.config, secret_box=BOX) as first:
        await first.wait_ready()
        state = _state(first)
        assert first.webhook("wh-7") is None, "a tombstone deletes"
        assert first.subscription("sub-b") is None
        webhook = first.webhook("wh-3")
        assert webhook is not None and webhook.version == 2, "the latest record wins"
        assert first.secrets(webhook) == ["s3cret-3"]
        assert [s.id for s in first.subscriptions_for("workflow.completed", "wf")] == ["sub-a"]
        assert first.subscriptions_for("workflow.completed", "other") == []
        assert first.subscriptions_for("workflow.started", "wf") == []

    assert len(state["webhooks"]) == 29  # type: ignore[arg-type]
    async with ConfigView(bootstrap, topics.config, secret_box=BOX) as second:
        await second.wait_ready()
        assert _state(second) == state


@pytest.mark.kafka
async def test_not_ready_until_caught_up_with_the_start_end_offsets(bootstrap, topics: Topics):
    count = 500
    await _write(bootstrap, topics.config, [_webhook(i) for i in range(count)], [])
    async with ConfigView(bootstrap, topics.config, secret_box=BOX) as view:
        assert not view.ready, "nothing has been applied yet"
        applied = []
        view.add_listener(lambda key, entity: applied.append(key))
        await view.wait_ready()
        assert len(applied) == count, "ready only once every record up to the end is applied"


@pytest.mark.kafka
async def test_follows_writes_after_start_and_read_your_writes(bootstrap, topics: Topics):
    async with ConfigView(bootstrap, topics.config, secret_box=BOX) as view:
        await view.wait_ready()
        assert view.ready, "an empty topic is caught up at once"
        async with create_producer(bootstrap) as producer:
            entity = _webhook(1)
            rec = encode(entity, key=entity.key, source="/tests")
            meta = await producer.send_and_wait(
                topics.config, rec.value, key=rec.key, headers=rec.headers
            )
        await view.wait_for(meta.partition, meta.offset, timeout=5)
        assert view.webhook("wh-1") is not None


@pytest.mark.kafka
async def test_invalid_config_records_are_skipped(bootstrap, topics: Topics):
    async with create_producer(bootstrap) as producer:
        await producer.send_and_wait(topics.config, b"{bad", key=b"webhook/x")
        await producer.send_and_wait(topics.config, b"{}", key=b"nonsense")
    await _write(bootstrap, topics.config, [_webhook(1)], [])
    async with ConfigView(bootstrap, topics.config, secret_box=BOX) as view:
        await view.wait_ready()
        assert [w.id for w in view.all(Webhook)] == ["wh-1"]


def test_secrets_are_cached_until_the_entity_changes_or_a_secret_expires() -> None:
    from datetime import timedelta

    view = ConfigView("unused:9092", "unused", secret_box=BOX)
    key = "subscription/sub-c"

    def stored(plain: str, minutes: int, expires: int | None = None) -> StoredSecret:
        return StoredSecret(
            ciphertext=BOX.encrypt(plain, entity_key=key),
            hint="…",
            created_at=NOW + timedelta(minutes=minutes),
            expires_at=None if expires is None else NOW + timedelta(minutes=expires),
        )

    sub = Subscription(
        id="sub-c",
        created_at=NOW,
        updated_at=NOW,
        url="https://c.example/h",
        secrets=[stored("old", 0, expires=10), stored("new", 1)],
    )
    first = view.secrets(sub, NOW)
    assert first == ["new", "old"]
    assert view.secrets(sub, NOW + timedelta(minutes=5)) is first  # one lookup, no decryption
    assert view.secrets(sub, NOW + timedelta(minutes=11)) == ["new"]  # "old" expired
    assert view.secrets(sub, NOW) == ["new", "old"]  # an earlier moment, worked out again
    rotated = sub.model_copy(update={"secrets": [stored("newer", 2)], "version": 2})
    assert view.secrets(rotated, NOW) == ["newer"]  # a changed entity is not served stale
