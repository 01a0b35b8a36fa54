"""Secrets at rest: AES-256-GCM with the key from ``HOOKLINE_SECRET_KEY``.

A stored secret reads ``v1:<base64(nonce || ciphertext)>``. The entity key
(``subscription/<id>``) is the associated data, so a ciphertext copied onto
another entity does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as _secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import ConfigurationError, SecretError

_PREFIX = "v1:"


def _derive_key(material: str) -> bytes:
    """A 32-byte key: the base64 of 32 bytes is taken as it is, anything else is hashed."""
    try:
        raw = base64.b64decode(material, validate=True)
        if len(raw) == 32:
            return raw
    except ValueError:
        pass
    if len(material) < 16:
        raise ConfigurationError("HOOKLINE_SECRET_KEY must be at least 16 characters")
    return hashlib.sha256(b"hookline-secret-key\x00" + material.encode()).digest()


class SecretBox:
    """Encrypts and decrypts entity secrets; safe to share between tasks."""

    def __init__(self, key_material: str) -> None:
        self._aead = AESGCM(_derive_key(key_material))

    def encrypt(self, plaintext: str, *, entity_key: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), entity_key.encode())
        return _PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, *, entity_key: str) -> str:
        if not stored.startswith(_PREFIX):
            raise SecretError("unknown secret format")
        try:
            blob = base64.b64decode(stored[len(_PREFIX) :], validate=True)
            plain = self._aead.decrypt(blob[:12], blob[12:], entity_key.encode())
        except (InvalidTag, ValueError) as exc:
            raise SecretError("secret does not decrypt with this key") from exc
        return plain.decode()


def generate_key() -> str:
    """A fresh key suitable for ``HOOKLINE_SECRET_KEY``."""
    return base64.b64encode(os.urandom(32)).decode()


def generate_subscription_secret() -> str:
    """``whsec_`` plus 32 random bytes in base64, as Standard Webhooks prescribes."""
    return "whsec_" + base64.b64encode(_secrets.token_bytes(32)).decode()


def mask(secret: str) -> str:
    """What may be shown of a secret after it was created: a prefix and the last 4 characters."""
    prefix = "whsec_" if secret.startswith("whsec_") else ""
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"{prefix}…{tail}"


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)
