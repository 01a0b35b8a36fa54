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


def test_several_keys_the_first_seals_and_every_one_opens():
    old, new = generate_key(), generate_key()
    sealed_by_old = SecretBox(old).encrypt("s", entity_key="webhook/a")
    both = SecretBox(f"{new}, {old}")
    assert both.decrypt(sealed_by_old, entity_key="webhook/a") == "s"
    assert not both.is_current(sealed_by_old)
    resealed = both.reseal(sealed_by_old, entity_key="webhook/a")
    assert both.is_current(resealed) and both.reseal(resealed, entity_key="webhook/a") == resealed
    assert SecretBox(new).decrypt(resealed, entity_key="webhook/a") == "s"
    with pytest.raises(SecretError, match="lacks"):
        SecretBox(new).decrypt(sealed_by_old, entity_key="webhook/a")


def test_the_ciphertext_names_its_key_and_never_the_key_itself():
    key = generate_key()
    box = SecretBox(key)
    stored = box.encrypt("s", entity_key="webhook/a")
    assert stored.startswith(f"v2:{box.primary_key_id}:")
    assert box.primary_key_id not in key and len(box.primary_key_id) == 8


def test_ciphertexts_without_a_key_id_are_still_read_with_any_key():
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    old, new = generate_key(), generate_key()
    nonce = os.urandom(12)
    sealed = AESGCM(base64.b64decode(old)).encrypt(nonce, b"legacy", b"webhook/a")
    v1 = "v1:" + base64.b64encode(nonce + sealed).decode()
    box = SecretBox([new, old])
    assert box.decrypt(v1, entity_key="webhook/a") == "legacy"
    assert not box.is_current(v1)
    assert box.is_current(box.reseal(v1, entity_key="webhook/a"))
