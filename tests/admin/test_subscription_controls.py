"""A subscription's delivery controls through the admin API: bounds, the client
certificate's write-only key, pause and resume, and operational event types."""

from __future__ import annotations

import pytest

from testkit.config import BOX
from testkit.tls import TestCA

from .conftest import Admin

pytestmark = pytest.mark.kafka


def controlled(**fields: object) -> dict[str, object]:
    return {"url": "https://receiver.example/hooks", **fields}


async def test_controls_are_stored_shown_and_a_second_put_of_the_same_body_changes_nothing(
    admin: Admin,
):
    client, view = admin.client, admin.ctx.view
    identity = TestCA().issue("hookline.client", client=True)
    body = controlled(
        retry_schedule=[0.2, 0.8],
        timeout=5,
        ordering="run",
        rate_limit={"per_second": 20},
        client_certificate={"certificate": identity.certificate, "key": identity.key},
        events=["workflow.*", "subscription.disabled"],
    )
    made = await client.put("/v1/subscriptions/ctl", json=body)
    assert made.status_code == 201, made.text
    shown = made.json()
    assert shown["retry_schedule"] == [0.2, 0.8] and shown["timeout"] == 5
    assert shown["ordering"] == "run" and shown["paused"] is False
    cert = shown["client_certificate"]
    assert cert["certificate"] == identity.certificate and "key" not in cert
    assert len(cert["fingerprint"]) == 64 and "hookline.client" in cert["subject"]
    assert identity.key not in made.text
    # Stored encrypted, under an associated data of its own (not the secrets').
    stored = view.subscription("ctl")
    assert stored is not None and stored.client_certificate is not None
    ciphertext = stored.client_certificate.key.ciphertext
    assert BOX.decrypt(ciphertext, entity_key="subscription/ctl#client_certificate") == identity.key
    # hookline apply sends the same body again: nothing changes, the key is not re-encrypted.
    again = await client.put("/v1/subscriptions/ctl", json=body)
    assert again.status_code == 200 and again.headers["hookline-result"] == "unchanged", again.text
    # An unrelated patch keeps the certificate as it was.
    patched = await client.patch("/v1/subscriptions/ctl", json={"timeout": 2})
    assert patched.status_code == 200 and patched.headers["hookline-changed-fields"] == "timeout"
    after = view.subscription("ctl")
    assert after is not None and after.client_certificate is not None
    assert after.client_certificate.key.ciphertext == ciphertext
    # A PUT without it removes it.
    removed = await client.put(
        "/v1/subscriptions/ctl", json={k: v for k, v in body.items() if k != "client_certificate"}
    )
    assert removed.status_code == 200 and removed.json()["client_certificate"] is None


async def test_controls_outside_the_service_s_bounds_are_refused_naming_the_field(admin: Admin):
    ca = TestCA()
    identity, other = ca.issue("a", client=True), ca.issue("b", client=True)
    longest = max(admin.settings.retry_schedule)
    cases = {
        "retry_schedule": controlled(retry_schedule=[longest * 2]),
        "timeout": controlled(timeout=admin.settings.max_request_timeout + 1),
        "ordering": controlled(ordering="strict"),
        "events": controlled(events=["subscription.deleted"]),
        "client_certificate": controlled(
            client_certificate={"certificate": identity.certificate, "key": other.key}
        ),
    }
    too_many = [0.1] * admin.settings.max_retry_attempts
    cases["retry_schedule "] = controlled(retry_schedule=too_many)
    for field, body in cases.items():
        answer = await admin.client.post("/v1/subscriptions", json=body)
        assert answer.status_code == 422, (field, answer.text)
        assert field.strip() in {e["loc"][1] for e in answer.json()["errors"]}, answer.text
        assert "BEGIN" not in answer.text  # a key is never echoed
    zero = await admin.client.post("/v1/subscriptions", json=controlled(retry_schedule=[0]))
    assert zero.status_code == 422


async def test_pause_and_resume_are_writes_that_say_whether_they_changed_anything(admin: Admin):
    client, view = admin.client, admin.ctx.view
    made = await client.put("/v1/subscriptions/p", json=controlled())
    assert made.status_code == 201
    paused = await client.post("/v1/subscriptions/p/pause", headers={"If-Match": '"1"'})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.headers["hookline-result"] == "updated"
    assert view.subscription("p").paused  # type: ignore[union-attr]
    twice = await client.post("/v1/subscriptions/p/pause")
    assert twice.status_code == 200 and twice.headers["hookline-result"] == "unchanged"
    stale = await client.post("/v1/subscriptions/p/resume", headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    resumed = await client.post("/v1/subscriptions/p/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    missing = await client.post("/v1/subscriptions/nope/pause")
    assert missing.status_code == 404
    doc = (await client.get("/openapi.json")).json()
    assert "post" in doc["paths"]["/v1/subscriptions/{id}/pause"]
    assert "post" in doc["paths"]["/v1/subscriptions/{id}/resume"]
    key = doc["components"]["schemas"]["ClientCertificateIn"]["properties"]["key"]
    assert key["writeOnly"] is True
