"""Signature checks against the published vectors, with a fixed clock where they are stale."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from services.ingress._signatures import (
    verify_github,
    verify_gitlab,
    verify_slack,
    verify_standard,
)
from shared.errors import SignatureRejected
from shared.standard_webhooks import sign
from testkit import FIXTURES

# Read at import: a clone without its fixtures fails collection here, loudly.
VECTORS: dict[str, Any] = json.loads((FIXTURES / "signature-vectors.json").read_text())
SLACK: dict[str, Any] = json.loads((FIXTURES / "slack" / "signing-vector.json").read_text())
TOLERANCE = 300.0


def one_char_changed(text: str, index: int = -2) -> str:
    """``text`` with one character replaced by another one of the same kind."""
    i = index % len(text)
    ch = text[i]
    swap = {"0": "1", "a": "b", "A": "B", "=": "=", "+": "/", "/": "+", ",": ","}
    new = swap.get(ch) or ("0" if ch != "0" else "1")
    if new == ch:
        return one_char_changed(text, index - 1)
    return text[:i] + new + text[i + 1 :]


# -- GitHub --------------------------------------------------------------------------------


def test_github_sha256_vector_is_accepted():
    v = VECTORS["github_sha256"]
    verify_github({"x-hub-signature-256": v["expected"]}, v["body"].encode(), [v["secret"]])


@pytest.mark.parametrize("part", ["signature", "body", "secret"])
def test_github_sha256_vector_with_one_character_changed_is_rejected(part):
    v = VECTORS["github_sha256"]
    signature, body, secret = v["expected"], v["body"], v["secret"]
    if part == "signature":
        signature = one_char_changed(signature)
    elif part == "body":
        body = one_char_changed(body)
    else:
        secret = one_char_changed(secret)
    with pytest.raises(SignatureRejected, match="mismatch"):
        verify_github({"x-hub-signature-256": signature}, body.encode(), [secret])


def test_github_sha1_vector_is_accepted_only_where_the_webhook_allows_it():
    v = VECTORS["github_sha1_legacy"]
    headers = {"x-hub-signature": v["expected"]}
    verify_github(headers, v["body"].encode(), [v["secret"]], allow_legacy_sha1=True)
    with pytest.raises(SignatureRejected, match="missing"):
        verify_github(headers, v["body"].encode(), [v["secret"]], allow_legacy_sha1=False)
    with pytest.raises(SignatureRejected, match="mismatch"):
        verify_github(
            {"x-hub-signature": one_char_changed(v["expected"])},
            v["body"].encode(),
            [v["secret"]],
            allow_legacy_sha1=True,
        )


def test_github_accepts_any_current_secret_during_rotation():
    v = VECTORS["github_sha256"]
    headers = {"x-hub-signature-256": v["expected"]}
    verify_github(headers, v["body"].encode(), ["the-new-secret", v["secret"]])
    with pytest.raises(SignatureRejected):
        verify_github(headers, v["body"].encode(), ["the-new-secret", "another"])


def test_github_without_signature_or_secret_is_rejected():
    with pytest.raises(SignatureRejected, match="missing"):
        verify_github({}, b"{}", ["s"])
    with pytest.raises(SignatureRejected, match="no active secret"):
        verify_github({"x-hub-signature-256": "sha256=00"}, b"{}", [])


# -- Standard Webhooks ---------------------------------------------------------------------


def standard_headers(v: dict[str, Any], **overrides: str) -> dict[str, str]:
    headers = {
        "webhook-id": v["msg_id"],
        "webhook-timestamp": str(v["timestamp"]),
        "webhook-signature": v["expected"],
    }
    headers.update(overrides)
    return headers


def test_standard_webhooks_vector_is_accepted_at_its_own_time():
    v = VECTORS["standard_webhooks_v1"]
    verify_standard(
        standard_headers(v),
        v["body"].encode(),
        [v["secret"]],
        now=v["timestamp"] + 10,
        tolerance=TOLERANCE,
    )


def test_standard_webhooks_vector_is_rejected_as_stale_today():
    v = VECTORS["standard_webhooks_v1"]
    with pytest.raises(SignatureRejected, match="stale"):
        verify_standard(
            standard_headers(v),
            v["body"].encode(),
            [v["secret"]],
            now=time.time(),
            tolerance=TOLERANCE,
        )


def test_standard_webhooks_timestamps_from_the_future_are_rejected_too():
    v = VECTORS["standard_webhooks_v1"]
    with pytest.raises(SignatureRejected, match="stale"):
        verify_standard(
            standard_headers(v),
            v["body"].encode(),
            [v["secret"]],
            now=v["timestamp"] - TOLERANCE - 1,
            tolerance=TOLERANCE,
        )


@pytest.mark.parametrize("part", ["signature", "published_wrong", "body", "msg_id", "timestamp"])
def test_standard_webhooks_vector_with_one_character_changed_is_rejected(part):
    v = VECTORS["standard_webhooks_v1"]
    headers = standard_headers(v)
    body = v["body"]
    if part == "signature":
        headers["webhook-signature"] = one_char_changed(v["expected"], -3)
    elif part == "published_wrong":
        headers["webhook-signature"] = v["a_wrong_signature"]
    elif part == "body":
        body = one_char_changed(body)
    elif part == "msg_id":
        headers["webhook-id"] = one_char_changed(v["msg_id"])
    else:
        headers["webhook-timestamp"] = str(v["timestamp"] + 1)
    with pytest.raises(SignatureRejected, match="mismatch"):
        verify_standard(
            headers, body.encode(), [v["secret"]], now=v["timestamp"], tolerance=TOLERANCE
        )


def test_standard_webhooks_accepts_one_of_several_signatures_in_the_header():
    v = VECTORS["standard_webhooks_v1"]
    headers = standard_headers(v, **{"webhook-signature": f"v1,bm90IGl0 {v['expected']}"})
    verify_standard(headers, v["body"].encode(), [v["secret"]], now=v["timestamp"], tolerance=5)


def test_our_standard_signature_agrees_with_the_reference_library():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    now = int(time.time())
    body = b'{"hello": "world"}'
    ours = sign("msg_1", now, body, secret)
    reference = StandardWebhook(secret).sign("msg_1", _dt(now), body.decode())
    assert ours == reference


def test_an_unpadded_whsec_secret_verifies_what_it_signs():
    # 31 key bytes: base64 with one "=" of padding, which some issuers leave off.
    secret = "whsec_" + base64.b64encode(bytes(range(31))).decode().rstrip("=")
    now = int(time.time())
    body = b'{"hello": "world"}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign("msg_1", now, body, secret),
    }
    verify_standard(headers, body, [secret], now=now, tolerance=TOLERANCE)
    assert sign("msg_1", now, body, secret) == StandardWebhook(secret + "=").sign(
        "msg_1", _dt(now), body.decode()
    )


def _dt(ts: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


# -- GitLab --------------------------------------------------------------------------------


def test_gitlab_token_must_equal_a_current_secret():
    verify_gitlab({"x-gitlab-token": "tok-2"}, b"{}", ["tok-1", "tok-2"], now=0, tolerance=300)
    with pytest.raises(SignatureRejected, match="token mismatch"):
        verify_gitlab({"x-gitlab-token": "tok-3"}, b"{}", ["tok-1"], now=0, tolerance=300)
    with pytest.raises(SignatureRejected, match="missing"):
        verify_gitlab({}, b"{}", ["tok-1"], now=0, tolerance=300)


def test_gitlab_signing_token_is_checked_as_standard_webhooks():
    v = VECTORS["standard_webhooks_v1"]
    verify_gitlab(
        standard_headers(v), v["body"].encode(), [v["secret"]], now=v["timestamp"], tolerance=300
    )
    with pytest.raises(SignatureRejected, match="mismatch"):
        verify_gitlab(
            standard_headers(v, **{"webhook-signature": v["a_wrong_signature"]}),
            v["body"].encode(),
            [v["secret"]],
            now=v["timestamp"],
            tolerance=300,
        )


def test_gitlab_with_a_good_token_and_a_bad_signature_is_rejected():
    v = VECTORS["standard_webhooks_v1"]
    headers = standard_headers(v, **{"webhook-signature": v["a_wrong_signature"]})
    headers["x-gitlab-token"] = "tok"
    with pytest.raises(SignatureRejected):
        verify_gitlab(
            headers, v["body"].encode(), ["tok", v["secret"]], now=v["timestamp"], tolerance=300
        )


# -- Slack ---------------------------------------------------------------------------------


def slack_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "x-slack-request-timestamp": SLACK["timestamp"],
        "x-slack-signature": SLACK["signature"],
    }
    headers.update(overrides)
    return headers


def test_slack_vector_is_accepted_at_its_own_time():
    verify_slack(
        slack_headers(),
        SLACK["body"].encode(),
        [SLACK["signing_secret"]],
        now=int(SLACK["timestamp"]) + 60,
        tolerance=TOLERANCE,
    )


def test_slack_vector_is_rejected_as_stale_today():
    with pytest.raises(SignatureRejected, match="stale"):
        verify_slack(
            slack_headers(),
            SLACK["body"].encode(),
            [SLACK["signing_secret"]],
            now=time.time(),
            tolerance=TOLERANCE,
        )


@pytest.mark.parametrize("part", ["signature", "body", "timestamp", "secret"])
def test_slack_vector_with_one_character_changed_is_rejected(part):
    headers, body, secret = slack_headers(), SLACK["body"], SLACK["signing_secret"]
    now = int(SLACK["timestamp"])
    if part == "signature":
        headers["x-slack-signature"] = one_char_changed(SLACK["signature"])
    elif part == "body":
        body = one_char_changed(body, 10)
    elif part == "timestamp":
        headers["x-slack-request-timestamp"] = str(now + 1)
    else:
        secret = one_char_changed(secret)
    with pytest.raises(SignatureRejected, match="mismatch"):
        verify_slack(headers, body.encode(), [secret], now=now, tolerance=TOLERANCE)


def test_slack_without_timestamp_is_rejected():
    headers = slack_headers()
    del headers["x-slack-request-timestamp"]
    with pytest.raises(SignatureRejected, match="timestamp"):
        verify_slack(headers, SLACK["body"].encode(), ["s"], now=0, tolerance=TOLERANCE)
