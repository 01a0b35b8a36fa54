"""Source IP behind trusted proxies, CIDR allowlists, the token bucket, header filtering."""

from __future__ import annotations

import pytest

from services.ingress._headers import filter_headers
from services.ingress._network import TrustedProxies, ip_allowed, parse_ip
from services.ingress._ratelimit import RateLimiter
from shared.entities import RateLimit


def test_peer_address_is_the_source_when_no_proxy_is_trusted():
    proxies = TrustedProxies([])
    assert proxies.client_ip("198.51.100.7", ["203.0.113.1"]) == "198.51.100.7"


def test_forwarded_for_from_an_untrusted_peer_is_ignored():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip("198.51.100.7", ["203.0.113.1"]) == "198.51.100.7"


def test_right_most_untrusted_forwarded_address_is_the_source():
    proxies = TrustedProxies(["10.0.0.0/8", "fd00::/8"])
    # The client forged the left-most entry; the proxies appended the rest.
    xff = ["1.1.1.1, 203.0.113.9", "10.0.0.5"]
    assert proxies.client_ip("10.0.0.2", xff) == "203.0.113.9"
    assert proxies.client_ip("fd00::1", ["2001:db8::5"]) == "2001:db8::5"


def test_all_trusted_hops_give_the_left_most_one():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip("10.0.0.2", ["10.0.0.9, 10.0.0.5"]) == "10.0.0.9"
    assert proxies.client_ip("10.0.0.2", []) == "10.0.0.2"


def test_garbage_from_a_trusted_proxy_makes_the_source_unknown():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip("10.0.0.2", ["not-an-ip"]) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.9:5123", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("unknown", None),
        ("", None),
    ],
)
def test_addresses_parse_with_ports_brackets_and_mapped_ipv4(text, expected):
    parsed = parse_ip(text)
    assert (str(parsed) if parsed else None) == expected


def test_cidr_allowlists_cover_ipv4_and_ipv6():
    cidrs = ["192.30.252.0/22", "2001:db8::/32"]
    assert ip_allowed("192.30.253.1", cidrs)
    assert ip_allowed("2001:db8::42", cidrs)
    assert not ip_allowed("192.30.0.1", cidrs)
    assert not ip_allowed("2001:db9::1", cidrs)
    assert not ip_allowed(None, cidrs), "an unknown source fails closed"
    assert ip_allowed("8.8.8.8", []), "no allowlist allows all"


def test_token_bucket_allows_the_burst_then_waits_for_refill():
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limit = RateLimit(per_second=2, burst=3)
    assert [limiter.check("w", limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("w", limit)
    assert wait == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.check("w", limit) == 0.0
    assert limiter.check("other", limit) == 0.0, "buckets are per webhook"


def test_burst_zero_means_per_second_rounded_up_and_a_changed_limit_resets():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limit = RateLimit(per_second=1.5)
    assert [limiter.check("w", limit) == 0.0 for _ in range(3)] == [True, True, False]
    assert limiter.check("w", RateLimit(per_second=10)) == 0.0
    assert limiter.check("w", None) == 0.0


def test_headers_keep_what_workflows_need_and_drop_credentials():
    raw = [
        (b"X-GitHub-Event", b"push"),
        (b"X-GitHub-Delivery", b"d-1"),
        (b"Authorization", b"Bearer x"),
        (b"Cookie", b"a=b"),
        (b"X-Hub-Signature-256", b"sha256=00"),
        (b"X-Hub-Signature", b"sha1=00"),
        (b"X-Gitlab-Token", b"t"),
        (b"X-Slack-Signature", b"v0=00"),
        (b"webhook-signature", b"v1,xx"),
        (b"X-Custom-Secret", b"s"),
        (b"Connection", b"keep-alive"),
        (b"Accept", b"*/*"),
        (b"Accept", b"text/plain"),
    ]
    assert filter_headers(raw) == {
        "x-github-event": "push",
        "x-github-delivery": "d-1",
        "accept": "*/*, text/plain",
    }
