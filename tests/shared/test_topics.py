"""The topic registry: prefixed names, cleanup policies and retry tiers."""

from __future__ import annotations

from shared.topics import topic_registry


def test_names_carry_the_prefix_and_config_is_compacted():
    topics = topic_registry("acme.", partitions=4, retry_tiers=3)
    assert topics.inbound == "acme.inbound"
    assert topics.config == "acme.config"
    assert topics.spec("config").configs["cleanup.policy"] == "compact"
    assert topics.spec("inbound").configs["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert topics.spec("dispatcher-runs").cleanup_policy == "compact"
    assert all(s.name.startswith("acme.") for s in topics)


def test_one_retry_tier_per_retry_and_lookup_is_clamped():
    topics = topic_registry("p.", retry_tiers=3)
    assert topics.retry_tiers == ("p.delivery-retry.2", "p.delivery-retry.3", "p.delivery-retry.4")
    assert topics.retry_tier(2) == "p.delivery-retry.2"
    assert topics.retry_tier(4) == "p.delivery-retry.4"
    assert topics.retry_tier(99) == "p.delivery-retry.4"
