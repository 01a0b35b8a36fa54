"""Secrets at rest: AES-GCM bound to the entity key; masks reveal nothing useful."""

from __future__ import annotations

import base64

import pytest

from shared.crypto import SecretBox, generate_key, generate_subscription_secret, mask
from shared.errors import ConfigurationError, SecretError


def test_round_trip_and_ciphertext_hides_the_plaintext():
    box = SecretBox(generate_key())
    stored = box.encrypt("whsec_topsecret", entity_key="subscription/a")
    assert "topsecret" not in stored
    assert box.decrypt(stored, entity_key="subscription/a") == "whsec_topsecret"


def test_ciphertext_moved_to_another_entity_or_key_does_not_decrypt():
    box = SecretBox(generate_key())
    stored = box.encrypt("s", entity_key="subscription/a")
    with pytest.raises(SecretError):
        box.decrypt(stored, entity_key="subscription/b")
    with pytest.raises(SecretError):
        SecretBox(generate_key()).decrypt(stored, entity_key="subscription/a")
    with pytest.raises(SecretError):
        box.decrypt(stored[:-4] + "AAAA", entity_key="subscription/a")


def test_short_key_material_is_refused():
    with pytest.raises(ConfigurationError):
        SecretBox("short")


def test_subscription_secrets_follow_standard_webhooks():
    secret = generate_subscription_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert generate_subscription_secret() != secret


def test_mask_shows_only_the_tail():
    assert mask("whsec_abcdefghijklmnopqrstuvwxyz") == "whsec_…wxyz"
    assert mask("short") == "…"
