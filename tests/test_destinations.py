"""One destination policy, three places: the same URLs get the same verdict from the admin
API (a subscription written), the delivery guard (a delivery connecting) and the local
engine's ``http`` node (a node connecting), each through its own entry point.

The write-time check judges the URL and a literal address; a host name is judged where it
is resolved, when a connection is opened: for a name, the admin API's verdict is the URL's
(rows marked ``named``), and the two connect-time checks judge what it resolves to.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpcore
import pytest

from services.delivery import DestinationGuard, DestinationRefused
from services.dispatcher import NodeFailed, NodePolicy, NodeRunner
from services.dispatcher._nodes import node_http_client
from shared.entities import Node
from shared.messages import RunRequested, WebhookReceived
from shared.settings import Settings
from shared.topics import Topics
from tests.admin.conftest import running_admin

pytestmark = pytest.mark.kafka

PUBLIC = "93.184.215.14"

# The names the rows use, and what they resolve to.
DNS: dict[str, list[str]] = {
    "public.example": [PUBLIC, "2606:4700::1111"],
    "internal.example": ["10.0.0.1"],
    "mixed.example": [PUBLIC, "10.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "loopback6.example": ["::1"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "nat64.example": ["64:ff9b::a00:1"],
    "nowhere.example": [],
    "localhost": ["127.0.0.1"],
}


@dataclass(frozen=True)
class Row:
    url: str
    allowed: bool
    # A name: the admin API cannot know its addresses and judges only the URL.
    named: bool = False
    lifted: bool = False  # HOOKLINE_ALLOW_PRIVATE_DESTINATIONS=1 and ..._INSECURE_URLS=1


ROWS = [
    Row(f"https://{PUBLIC}/hooks", True),
    Row("https://[2606:4700::1111]:8443/hooks", True),
    Row(f"https://[::ffff:{PUBLIC}]/", True),
    Row("https://127.0.0.1/", False),
    Row("https://127.1/", False),
    Row("https://2130706433/", False),
    Row("https://0x7f.0.0.1/", False),
    Row("https://10.0.0.1/", False),
    Row("https://172.16.5.4/", False),
    Row("https://192.168.1.1/", False),
    Row("https://100.64.0.1/", False),
    Row("https://169.254.169.254/latest/meta-data", False),
    Row("https://169.254.1.1/", False),
    Row("https://0.0.0.0/", False),
    Row("https://224.0.0.1/", False),
    Row("https://240.0.0.1/", False),
    Row("https://192.0.2.1/", False),
    Row("https://198.18.0.1/", False),
    Row("https://[::1]:8443/", False),
    Row("https://[::]/", False),
    Row("https://[fe80::1%25eth0]/", False),
    Row("https://[fc00::1]/", False),
    Row("https://[fd00:ec2::254]/", False),
    Row("https://[fec0::1]/", False),
    Row("https://[ff02::1]/", False),
    Row("https://[2001:db8::1]/", False),
    Row("https://[3fff::1]/", False),
    Row("https://[::ffff:127.0.0.1]/", False),
    Row("https://[::127.0.0.1]/", False),
    Row("https://[64:ff9b::7f00:1]/", False),
    Row("https://[64:ff9b::5db8:d70e]/", False),
    Row("https://[2002:7f00:1::1]/", False),
    Row("https://[2002:5db8:d70e::1]/", False),
    Row("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", False),
    Row(f"http://{PUBLIC}/", False),
    Row(f"ftp://{PUBLIC}/", False),
    Row(f"https://user:pass@{PUBLIC}/", False),
    Row(f"https://{PUBLIC}:0/", False),
    Row(f"https://{PUBLIC}/a b", False),
    Row("https://localhost:8443/", False),
    Row("https://hooks.localhost/", False),
    Row("https://public.example/hooks", True, named=True),
    Row("https://internal.example/", False, named=True),
    Row("https://mixed.example/", False, named=True),
    Row("https://metadata.example/", False, named=True),
    Row("https://loopback6.example/", False, named=True),
    Row("https://mapped.example/", False, named=True),
    Row("https://nat64.example/", False, named=True),
    Row("https://nowhere.example/", False, named=True),
    # With both flags: private and plain-http destinations pass; cloud metadata never does.
    Row("http://127.0.0.1:9999/hooks", True, lifted=True),
    Row("https://localhost/", True, lifted=True),
    Row("https://internal.example/", True, named=True, lifted=True),
    Row("https://169.254.169.254/", False, lifted=True),
    Row("https://[fd00:ec2::254]/", False, lifted=True),
    Row("https://[::ffff:169.254.169.254]/", False, lifted=True),
    Row("https://metadata.example/", False, named=True, lifted=True),
]


class TableResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        if host not in DNS:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test's DNS")
        return list(DNS[host])


@dataclass
class RecordingNetwork(httpcore.AsyncNetworkBackend):
    """Where the engine's client would have connected; it connects nowhere."""

    connected: list[str] = field(default_factory=list)

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.connected.append(host)
        raise httpcore.ConnectError("the test network connects nowhere")

    async def sleep(self, seconds: float) -> None:
        return None


async def guard_allows(row: Row) -> bool:
    """As the delivery sender does: the URL, then the addresses to connect to."""
    guard = DestinationGuard(TableResolver(), allow_private=row.lifted, allow_insecure=row.lifted)
    try:
        destination = guard.check_url(row.url)
        await guard.connect_addresses(destination.host, destination.port)
    except DestinationRefused:
        return False
    return True


async def engine_allows(row: Row) -> bool:
    """A workflow's ``http`` node: allowed when its client went on to connect."""
    policy = NodePolicy(
        allow_private_destinations=row.lifted, allow_insecure_urls=row.lifted, http_timeout=5
    )
    network = RecordingNetwork()
    async with node_http_client(policy, resolver=TableResolver(), network=network) as client:
        runner = NodeRunner(client, policy)
        node = Node(id="call", kind="http", config={"url": row.url, "method": "GET"})
        with pytest.raises(NodeFailed) as failed:
            await runner.run(node, _command())
    if failed.value.code == "http_error" and network.connected:
        return True
    assert failed.value.code in ("forbidden_destination", "invalid_node_config", "http_error")
    return False


async def test_admin_guard_and_engine_give_every_url_the_same_verdict(
    settings: Settings, topics: Topics
) -> None:
    verdicts: dict[str, tuple[Row, bool, bool, bool]] = {}
    for lifted in (False, True):
        flags = {"allow_private_destinations": lifted, "allow_insecure_urls": lifted}
        async with running_admin(settings.model_copy(update=flags), topics) as admin:
            for row in (r for r in ROWS if r.lifted == lifted):
                answer = await admin.client.post("/v1/subscriptions", json={"url": row.url})
                assert answer.status_code in (201, 422), answer.text
                if answer.status_code == 422:
                    assert answer.json()["errors"][0]["loc"] == ["body", "url"], answer.text
                verdicts[f"{row.url} lifted={lifted}"] = (
                    row,
                    answer.status_code == 201,
                    await guard_allows(row),
                    await engine_allows(row),
                )
    wrong = []
    for key, (row, admin_ok, guard_ok, engine_ok) in verdicts.items():
        # At write time a name is as good as its URL: the admin API cannot resolve it.
        admin_expected = row.allowed or (row.named and _url_allowed(row))
        if (admin_ok, guard_ok, engine_ok) != (admin_expected, row.allowed, row.allowed):
            wrong.append(f"{key}: admin {admin_ok}, guard {guard_ok}, engine {engine_ok}")
    assert not wrong, "\n".join(wrong)


def _url_allowed(row: Row) -> bool:
    """A named row's URL itself passes (its refusal, if any, comes from its addresses)."""
    host = urlsplit(row.url).hostname or ""
    return host in DNS


def _command() -> RunRequested:
    now = datetime.now(UTC)
    event = WebhookReceived(
        webhook_id="wh",
        provider="generic",
        event_type="push",
        provider_event_id="e-1",
        received_at=now,
    )
    return RunRequested(
        run_id="run-1",
        workflow_id="wf",
        webhook_id="wh",
        provider_event_id="e-1",
        event_type="push",
        requested_at=now,
        input=event,
    )
