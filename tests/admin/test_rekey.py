"""Key rotation: rekey under "B,A", then B alone, and everything verifies and signs as before."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
import standardwebhooks
from pydantic import SecretStr

from services.delivery import DeliveryService
from shared.crypto import SecretBox, generate_key, generate_subscription_secret
from shared.settings import Settings
from shared.topics import Topics
from testkit import TEST_SECRET_KEY
from testkit.kafka import read_topic, wait_until
from testkit.receivers import Receiver, completed, publish
from tests.ingress.helpers import ingress_client, standard_headers

from .conftest import running_admin

pytestmark = pytest.mark.kafka


def with_keys(settings: Settings, keys: str) -> Settings:
    return settings.model_copy(update={"secret_key": SecretStr(keys)})


def latest(records: list[Any]) -> dict[bytes, bytes | None]:
    out: dict[bytes, bytes | None] = {}
    for r in records:
        out[r.key] = r.value
    return out


def sealed_values(entity: dict[str, Any]) -> list[str]:
    return [s["ciphertext"] for s in entity.get("secrets", [])] + list(
        entity.get("encrypted_headers", {}).values()
    )


async def test_rekey_then_removing_the_old_key_leaves_every_webhook_verifying_and_every_subscription_signing(
    settings: Settings, topics: Topics
):
    key_a, key_b = TEST_SECRET_KEY, generate_key()
    hook_secret, sub_secret = generate_subscription_secret(), generate_subscription_secret()
    header = f"Bearer {uuid.uuid4().hex}"
    bootstrap = settings.kafka_bootstrap_servers
    async with Receiver() as receiver:
        async with running_admin(with_keys(settings, key_a), topics) as admin:
            hook = await admin.client.post(
                "/v1/webhooks",
                json={"provider": "generic", "secret": hook_secret, "bindings": []},
            )
            assert hook.status_code == 201, hook.text
            sub = await admin.client.post(
                "/v1/subscriptions",
                json={
                    "url": receiver.url("/signed"),
                    "secret": sub_secret,
                    "events": ["workflow.completed"],
                    "headers": {"Authorization": header},
                },
            )
            assert sub.status_code == 201, sub.text
        hook_id, sub_id = hook.json()["id"], sub.json()["id"]

        async with running_admin(with_keys(settings, f"{key_b},{key_a}"), topics) as admin:
            first = await admin.client.post("/v1/admin/rekey")
            assert first.status_code == 200, first.text
            report = first.json()
            assert (report["rewritten"], report["failed"]) == (2, [])
            assert report["key_id"] == SecretBox(key_b).primary_key_id
            again = (await admin.client.post("/v1/admin/rekey")).json()
            assert (again["rewritten"], again["current"]) == (0, 2)  # idempotent

        # The latest version of every entity opens with B alone.
        config = latest(await read_topic(bootstrap, topics.config))
        only_b = SecretBox(key_b)
        for key in (f"webhook/{hook_id}".encode(), f"subscription/{sub_id}".encode()):
            value = config[key]
            assert value is not None
            for sealed in sealed_values(orjson.loads(value)):
                assert only_b.is_current(sealed), (key, sealed[:12])

        b_only = with_keys(settings, key_b)
        # Every webhook still verifies: a signed post through the real ingress app.
        async with ingress_client(b_only) as http:
            body = b'{"type": "ping"}'
            answer = await http.post(
                f"/webhooks/{hook_id}",
                content=body,
                headers={
                    **standard_headers(hook_secret, body, f"msg_{uuid.uuid4().hex}"),
                    "content-type": "application/json",
                },
            )
            assert answer.status_code < 300, answer.text
        # Every subscription still signs, and sends its header.
        async with DeliveryService(b_only) as service:
            await service.wait_joined()
            await publish(bootstrap, topics.workflow_events, [completed("run-rekey")])
            await wait_until(lambda: bool(receiver.on("/signed")), timeout=20)
    delivered = receiver.on("/signed")[0]
    standardwebhooks.Webhook(sub_secret).verify(delivered.body, delivered.headers)
    assert delivered.headers["Authorization"] == header
