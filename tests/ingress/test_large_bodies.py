"""Bodies far above Kafka's 1 MiB default, under the cap, are accepted and stored whole."""

from __future__ import annotations

import base64
import os

import pytest

from shared.cloudevents import decode
from shared.messages import WebhookReceived
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from testkit.kafka import read_topic
from tests.ingress.helpers import ingress_client

pytestmark = pytest.mark.kafka


async def test_a_three_mebibyte_binary_body_is_accepted_and_kept_as_base64(
    settings: Settings, topics: Topics
):
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("raw", provider="generic", allow_unsigned=True),
    )
    body = os.urandom(3 * 1024 * 1024)  # incompressible, and not UTF-8
    async with ingress_client(settings) as http:
        response = await http.post(
            "/webhooks/raw", content=body, headers={"Content-Type": "application/octet-stream"}
        )
    assert response.status_code == 202, response.text
    records = await read_topic(settings.kafka_bootstrap_servers, topics.inbound, min_count=1)
    message = decode(list(records[0].headers.items()), records[0].value, WebhookReceived).data
    assert message.payload_encoding == "base64"
    assert base64.b64decode(message.payload) == body
