"""Egress: deliveries through a real CONNECT proxy, and client certificates (mutual TLS).

The receivers answer over TLS with a certificate for ``receiver.example`` from a test CA
the service trusts (``HOOKLINE_DELIVERY_CA_FILE``); a resolver given to the service says
where names are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from services.delivery import DeliveryService
from services.delivery._transport import TransportKind
from shared.cloudevents import decode
from shared.crypto import generate_subscription_secret
from shared.messages import DeliveryAttempted
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import client_certificate, put_entities, subscription
from testkit.kafka import read_topic, wait_until
from testkit.proxy import ConnectProxy
from testkit.receivers import Receiver, completed, publish
from testkit.tls import TestCA

PUBLIC = "93.184.216.34"  # what the resolver says receiver.example is: a public address


class Names:
    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.table:
            raise OSError(f"{host} is not in the test's table")
        return [self.table[host]]


@asynccontextmanager
async def delivering(
    settings: Settings, transport: TransportKind, resolver: Names, **overrides: Any
) -> AsyncIterator[DeliveryService]:
    tuned = settings.model_copy(update=overrides)
    async with DeliveryService(tuned, resolver=resolver, transport=transport) as service:
        await service.wait_joined()
        yield service


async def attempts(settings: Settings, topics: Topics, count: int) -> list[DeliveryAttempted]:
    records = await read_topic(
        settings.kafka_bootstrap_servers, topics.delivery_attempts, min_count=count, timeout=15
    )
    return [decode(list(r.headers.items()), r.value, DeliveryAttempted).data for r in records]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_delivery_goes_through_the_proxy_to_the_checked_address_and_a_private_one_never(
    settings: Settings, topics: Topics, tmp_path: Path, transport: TransportKind
) -> None:
    ca = TestCA()
    identity = ca.issue("receiver.example")
    secret = generate_subscription_secret()
    context = ca.server_context(identity, tmp_path)
    async with (
        Receiver(ssl_context=context, name="receiver.example") as receiver,
        ConnectProxy() as proxy,
    ):
        # The proxy takes the public address the guard checked to the receiver on loopback.
        proxy.routes[f"{PUBLIC}:{receiver.port}"] = ("127.0.0.1", receiver.port)
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription("out", secrets=[secret], url=receiver.url("/hook")),
            subscription("inside", url=f"https://internal.example:{receiver.port}/hook"),
        )
        names = Names({"receiver.example": PUBLIC, "internal.example": "10.1.2.3"})
        async with delivering(
            settings,
            transport,
            names,
            # The proxy is on loopback: only its own address is exempt from the policy.
            allow_private_destinations=False,
            allow_insecure_urls=False,
            egress_proxy=proxy.url,
            delivery_ca_file=ca.write(tmp_path),
            retry_schedule=(30.0,),
        ):
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r1")]
            )
            await wait_until(lambda: len(receiver.requests) == 1, timeout=20)
            records = await attempts(settings, topics, 2)
    [request] = receiver.requests
    standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    assert request.headers["Host"] == f"receiver.example:{receiver.port}"
    # The proxy was asked for the checked address, never a name, never the private one.
    assert proxy.targets == [f"{PUBLIC}:{receiver.port}"]
    by_sub = {r.subscription_id: r for r in records}
    assert by_sub["out"].outcome == "succeeded"
    refused = by_sub["inside"]
    assert refused.outcome == "failed" and (refused.error or "").startswith("destination_refused")
    assert "10.1.2.3" in (refused.error or "")


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_subscription_with_a_client_certificate_is_let_in_by_a_receiver_that_requires_one(
    settings: Settings, topics: Topics, tmp_path: Path, transport: TransportKind
) -> None:
    ca = TestCA()
    context = ca.server_context(ca.issue("receiver.example"), tmp_path, require_client=True)
    client = ca.issue("hookline.client", client=True)
    async with Receiver(ssl_context=context, name="receiver.example") as receiver:
        await put_entities(
            settings.kafka_bootstrap_servers,
            topics.config,
            subscription(
                "with-cert",
                url=receiver.url("/with"),
                client_certificate=client_certificate("with-cert", client.certificate, client.key),
            ),
            subscription("without", url=receiver.url("/without")),
        )
        names = Names({"receiver.example": "127.0.0.1"})
        async with delivering(
            settings,
            transport,
            names,
            delivery_ca_file=ca.write(tmp_path),
            retry_schedule=(30.0,),
        ):
            await publish(
                settings.kafka_bootstrap_servers, topics.workflow_events, [completed("r1")]
            )
            records = await attempts(settings, topics, 2)
    by_sub = {r.subscription_id: r for r in records}
    assert by_sub["with-cert"].outcome == "succeeded"
    assert by_sub["without"].outcome == "failed" and by_sub["without"].status_code is None
    assert [r.path for r in receiver.requests] == ["/with"]
