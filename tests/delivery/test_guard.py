"""The SSRF guard: refused at send time, on the address actually resolved; lifted by the flags."""

from __future__ import annotations

import socket

import pytest

from services.delivery import DestinationGuard, DestinationRefused, Sender
from testkit.receivers import Receiver


class MapResolver:
    """A resolver the test controls: host → addresses; counts lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups = 0

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        return self.answers[host]


FORBIDDEN = [
    "127.0.0.1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "::ffff:127.0.0.1",
    "ff02::1",
]


@pytest.mark.parametrize("address", FORBIDDEN)
async def test_hosts_resolving_to_internal_addresses_are_refused(address: str) -> None:
    guard = DestinationGuard(MapResolver({"hooks.example.com": [address]}))
    with pytest.raises(DestinationRefused):
        await guard.connect_addresses("hooks.example.com", 443)


async def test_one_internal_answer_among_public_ones_refuses_the_host() -> None:
    guard = DestinationGuard(MapResolver({"h.example.com": ["93.184.216.34", "10.0.0.1"]}))
    with pytest.raises(DestinationRefused):
        await guard.connect_addresses("h.example.com", 443)


async def test_public_addresses_pass_and_the_flag_lifts_the_range_check() -> None:
    resolver = MapResolver({"h.example.com": ["93.184.216.34"], "in.example.com": ["10.0.0.1"]})
    assert await DestinationGuard(resolver).connect_addresses("h.example.com", 443) == [
        "93.184.216.34"
    ]
    lifted = DestinationGuard(resolver, allow_private=True)
    assert await lifted.connect_addresses("in.example.com", 443) == ["10.0.0.1"]


def test_http_urls_are_refused_unless_insecure_urls_are_allowed() -> None:
    with pytest.raises(DestinationRefused, match="https"):
        DestinationGuard().check_url("http://example.com/hook")
    DestinationGuard().check_url("https://example.com/hook")
    DestinationGuard(allow_insecure=True).check_url("http://example.com/hook")
    with pytest.raises(DestinationRefused):
        DestinationGuard(allow_insecure=True).check_url("file:///etc/passwd")


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_send_time_refusal_never_reaches_the_loopback_receiver(transport: str) -> None:
    async with Receiver() as receiver:
        resolver = MapResolver({"hooks.example.com": ["127.0.0.1"]})
        guard = DestinationGuard(resolver, allow_insecure=True)
        async with Sender(guard, transport=transport) as sender:  # type: ignore[arg-type]
            url = f"http://hooks.example.com:{receiver.port}/hook"
            outcome = await sender.send(url, {}, b"{}")
            literal = await sender.send(receiver.url(), {}, b"{}")
    assert outcome.status_code is None and outcome.error is not None
    assert outcome.error.startswith("destination_refused")
    assert literal.error is not None and literal.error.startswith("destination_refused")
    assert resolver.lookups >= 1
    assert receiver.requests == []


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_with_the_flag_the_checked_address_is_used_and_host_is_kept(transport: str) -> None:
    async with Receiver() as receiver:
        resolver = MapResolver({"hooks.example.com": ["127.0.0.1"]})
        guard = DestinationGuard(resolver, allow_private=True, allow_insecure=True)
        async with Sender(guard, transport=transport) as sender:  # type: ignore[arg-type]
            outcome = await sender.send(
                f"http://hooks.example.com:{receiver.port}/hook", {"x-a": "1"}, b"{}"
            )
    assert outcome.status_code == 200, outcome
    assert resolver.lookups >= 1
    [request] = receiver.requests
    assert request.headers["Host"] == f"hooks.example.com:{receiver.port}"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_a_host_resolving_to_ipv6_loopback_is_refused_then_allowed_with_the_flag() -> None:
    async with Receiver(host="::1") as receiver:
        resolver = MapResolver({"six.example.com": ["::1"]})
        url = f"http://six.example.com:{receiver.port}/hook"
        async with Sender(DestinationGuard(resolver, allow_insecure=True)) as sender:
            refused = await sender.send(url, {}, b"{}")
        lifted = DestinationGuard(resolver, allow_private=True, allow_insecure=True)
        async with Sender(lifted) as sender:
            allowed = await sender.send(url, {}, b"{}")
    assert refused.error is not None and refused.error.startswith("destination_refused")
    assert allowed.status_code == 200
    assert len(receiver.requests) == 1


async def test_redirects_are_not_followed_and_count_as_failures() -> None:
    async with Receiver() as receiver:
        receiver.script("/hook", [302], location=receiver.url("/elsewhere"))
        guard = DestinationGuard(allow_private=True, allow_insecure=True)
        async with Sender(guard) as sender:
            outcome = await sender.send(receiver.url("/hook"), {}, b"{}")
    assert outcome.status_code == 302 and not outcome.succeeded
    assert [r.path for r in receiver.requests] == ["/hook"]
