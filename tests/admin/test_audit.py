"""The audit trail's pieces: the change digest keeps no secret; refusals never wait."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from services.admin.audit import AuditTrail, change_digest, refused_anonymously, scrub
from shared.settings import Settings
from shared.topics import Topics
from testkit.kafka import read_topic


def test_the_digest_ignores_secrets_and_header_values_but_not_the_rest():
    a = orjson.dumps({"url": "https://x", "secret": "whsec_A", "headers": {"Authorization": "a"}})
    b = orjson.dumps({"headers": {"Authorization": "b"}, "secret": "whsec_B", "url": "https://x"})
    c = orjson.dumps({"url": "https://y", "secret": "whsec_A"})
    assert change_digest(a) == change_digest(b)  # same change but for the secrets
    assert change_digest(a) != change_digest(c)
    assert change_digest(None) == hashlib.sha256(b"").hexdigest()
    assert change_digest(b'{"secret": "x"') != hashlib.sha256(b'{"secret": "x"').hexdigest()


def test_scrub_removes_nested_credentials_and_keeps_header_names():
    scrubbed = scrub({"headers": {"X-Key": "v"}, "auth": {"password": "p"}, "api_token": "t"})
    assert scrubbed == {
        "headers": {"X-Key": "[redacted]"},
        "auth": {"password": "[redacted]"},
        "api_token": "[redacted]",
    }


@pytest.mark.kafka
async def test_a_flood_of_refusals_is_folded_and_every_one_counted(
    settings: Settings, topics: Topics
):
    async with AuditTrail(
        settings.kafka_bootstrap_servers, topics.audit, max_pending=5, flush_interval=0.05
    ) as trail:
        for i in range(200):
            trail.record_refusal(
                refused_anonymously(method="GET", path="/v1/x", source_ip=None, request_id=f"r{i}")
            )
        assert trail.pending <= 6  # bounded, whatever the flood
    records = await read_topic(settings.kafka_bootstrap_servers, topics.audit)
    entries = [orjson.loads(r.value or b"") for r in records]
    assert len(entries) <= 6
    assert sum(e["count"] for e in entries) == 200
    assert all(e["actor"] == "anonymous" and e["status"] == 401 for e in entries)
