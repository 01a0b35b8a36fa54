"""Signature checks for each provider, on the raw bytes, in constant time.

Every function takes the request headers (a case-insensitive mapping, or a
dict with lower-case names), the raw body, the webhook's current secrets
(rotation: any one may match) and, where timestamps are signed, the current
time. Each returns ``None`` when the request is authentic and raises
:class:`SignatureRejected` with a short reason otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from shared.errors import SignatureRejected
from shared.standard_webhooks import signing_key


def _hex_hmac(key: bytes, message: bytes, algorithm: str) -> str:
    return hmac.new(key, message, algorithm).hexdigest()


def _matches_any(given: str, candidates: Sequence[str]) -> bool:
    given_bytes = given.encode()
    matched = False
    # No early exit: the time taken says nothing about which secret matched.
    for candidate in candidates:
        matched |= hmac.compare_digest(given_bytes, candidate.encode())
    return matched


def _require_secrets(secrets: Sequence[str]) -> None:
    if not secrets:
        raise SignatureRejected("webhook has no active secret")


def _check_window(raw: str | None, now: float, tolerance: float) -> None:
    if raw is None or not raw.strip():
        raise SignatureRejected("missing timestamp")
    try:
        timestamp = int(raw.strip())
    except ValueError:
        raise SignatureRejected("malformed timestamp") from None
    if abs(now - timestamp) > tolerance:
        raise SignatureRejected("stale timestamp")


# -- GitHub --------------------------------------------------------------------------------


def verify_github(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    allow_legacy_sha1: bool = False,
) -> None:
    """``X-Hub-Signature-256: sha256=<hex>``; ``X-Hub-Signature: sha1=<hex>`` only if allowed."""
    _require_secrets(secrets)
    given = headers.get("x-hub-signature-256")
    if given is not None:
        expected = ["sha256=" + _hex_hmac(s.encode(), body, "sha256") for s in secrets]
        if _matches_any(given.strip().lower(), expected):
            return
        raise SignatureRejected("signature mismatch")
    legacy = headers.get("x-hub-signature")
    if legacy is not None and allow_legacy_sha1:
        expected = ["sha1=" + _hex_hmac(s.encode(), body, "sha1") for s in secrets]
        if _matches_any(legacy.strip().lower(), expected):
            return
        raise SignatureRejected("signature mismatch")
    raise SignatureRejected("missing signature")


# -- Standard Webhooks (generic webhooks, GitLab's signing token) --------------------------


def standard_keys(secret: str) -> list[bytes]:
    """The HMAC keys a secret stands for: ``whsec_<base64>`` decodes; others are tried both ways."""
    if secret.startswith("whsec_"):
        # The signer's own decoding (padding restored), so what delivery signs, verifies.
        return [signing_key(secret)]
    keys = [secret.encode()]
    try:
        decoded = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        return keys
    if decoded:
        keys.append(decoded)
    return keys


def has_standard_signature(headers: Mapping[str, str]) -> bool:
    return headers.get("webhook-signature") is not None


def verify_standard(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: float,
) -> None:
    """``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<b64> [v1,<b64> …]``."""
    _require_secrets(secrets)
    msg_id = headers.get("webhook-id")
    signature = headers.get("webhook-signature")
    if msg_id is None or signature is None:
        raise SignatureRejected("missing signature")
    raw_timestamp = headers.get("webhook-timestamp")
    _check_window(raw_timestamp, now, tolerance)
    assert raw_timestamp is not None
    # The signed content uses the header's text exactly as sent.
    content = f"{msg_id}.{raw_timestamp.strip()}.".encode() + body
    expected = [
        base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for secret in secrets
        for key in standard_keys(secret)
    ]
    given = [
        part.split(",", 1)[1]
        for part in signature.split()
        if part.startswith("v1,") and "," in part
    ]
    matched = False
    for candidate in given:
        matched |= _matches_any(candidate, expected)
    if not matched:
        raise SignatureRejected("signature mismatch")


# -- GitLab --------------------------------------------------------------------------------


def verify_gitlab(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: float,
) -> None:
    """``X-Gitlab-Token`` equal to a secret, and/or GitLab's Standard Webhooks signature.

    Whatever credential is presented must check out; at least one must be.
    """
    _require_secrets(secrets)
    token = headers.get("x-gitlab-token")
    signed = has_standard_signature(headers)
    if token is None and not signed:
        raise SignatureRejected("missing token")
    if token is not None and not _matches_any(token, secrets):
        raise SignatureRejected("token mismatch")
    if signed:
        verify_standard(headers, body, secrets, now=now, tolerance=tolerance)


# -- Slack ---------------------------------------------------------------------------------


def verify_slack(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: float,
) -> None:
    """``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">``, 5-minute window."""
    _require_secrets(secrets)
    signature = headers.get("x-slack-signature")
    if signature is None:
        raise SignatureRejected("missing signature")
    raw_timestamp = headers.get("x-slack-request-timestamp")
    _check_window(raw_timestamp, now, tolerance)
    assert raw_timestamp is not None
    base = f"v0:{raw_timestamp.strip()}:".encode() + body
    expected = ["v0=" + _hex_hmac(s.encode(), base, "sha256") for s in secrets]
    if not _matches_any(signature.strip(), expected):
        raise SignatureRejected("signature mismatch")
